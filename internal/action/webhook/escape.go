package webhook

import (
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"text/template/parse"

	template "github.com/DataDog/datadog-agent/pkg/template/text"
)

// Event data is escaped by where the template writes it, the way
// html/template does for HTML, but for the few places a request has: at
// start-up, every {{action}} that prints is given, as the last command of
// its pipeline, the escaper of the place its literal text puts it in. The
// operator's literal text is never escaped; what an event brings in cannot
// leave the place it is written into.
//
//	url   https://{{host}}/{{path segment}}?q={{query component}}#{{fragment}}
//	      a leading {{action}} before any "://" is the URL (or its start),
//	      inserted as it is: remediation.yaml chose it
//	header  any text without control characters (CR, LF, NUL, ...)
//	body  with a JSON Content-Type (or none): a JSON value outside a
//	      string, the contents of a JSON string inside one;
//	      application/x-www-form-urlencoded: a query component;
//	      any other: as it is
//
// The functions json, pathSegment and urlquery say what their result
// already is, and the escaper of that place lets it through unchanged;
// anywhere else it is escaped as any other text.

// place is where in a request an action writes.
type place uint8

const (
	urlStart place = iota // before "://": the URL itself, or its scheme
	urlBase               // after an action that wrote the URL's start
	urlHost               // between "://" and the path: user info, host, port
	urlPath
	urlQuery
	urlFragment
	header
	jsonValue  // a JSON body, outside any string
	jsonString // inside a JSON string
	jsonEscape // inside a JSON string, right after a backslash
	formBody   // application/x-www-form-urlencoded
	textBody   // any other body: written as it is
)

// escapers name the template function that escapes for each place; a
// place without one writes values as they are.
var escapers = map[place]string{
	urlBase:     "_webhook_path",
	urlHost:     "_webhook_host",
	urlPath:     "_webhook_path",
	urlQuery:    "_webhook_query",
	urlFragment: "_webhook_path",
	header:      "_webhook_header",
	jsonValue:   "_webhook_json",
	jsonString:  "_webhook_json_string",
	formBody:    "_webhook_query",
}

// escapeFuncs are the escapers, and the functions whose results need no
// escaping where they belong.
func escapeFuncs() template.FuncMap {
	return template.FuncMap{
		"json":        toJSON,
		"pathSegment": func(v any) pathText { return pathText(escapePath(text(v))) },
		"urlquery":    func(args ...any) queryText { return queryText(url.QueryEscape(textArgs(args))) },

		"_webhook_path": func(v any) string {
			if p, ok := v.(pathText); ok {
				return string(p)
			}
			return escapePath(text(v))
		},
		"_webhook_query": func(v any) string {
			if q, ok := v.(queryText); ok {
				return string(q)
			}
			return url.QueryEscape(text(v))
		},
		"_webhook_host":   escapeHost,
		"_webhook_header": escapeHeader,
		"_webhook_json": func(v any) (string, error) {
			if j, ok := v.(jsonText); ok {
				return string(j), nil
			}
			s, err := toJSON(v)
			return string(s), err
		},
		"_webhook_json_string": func(v any) (string, error) {
			s, err := toJSON(text(v))
			return strings.TrimSuffix(strings.TrimPrefix(string(s), `"`), `"`), err
		},
	}
}

// The results of json, pathSegment and urlquery: text already escaped
// for one place.
type (
	jsonText  string
	pathText  string
	queryText string
)

// escapeError is an escaper's refusal of a value; execute reports it
// without text/template's "error calling ..." around it.
type escapeError struct{ msg string }

func (e *escapeError) Error() string { return e.msg }

// text is v as a template would print it; nil is empty.
func text(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// textArgs is the arguments of urlquery as text/template's own joins them.
func textArgs(args []any) string {
	if len(args) == 1 {
		if s, ok := args[0].(string); ok {
			return s
		}
	}
	return fmt.Sprint(args...)
}

// escapePath percent-encodes every byte but the unreserved ones
// (RFC 3986: letters, digits, "-", ".", "_", "~"), so that the value is
// one path segment wherever in a URL it lands: "/", "?", "#", "&", "="
// and spaces are all escaped. A segment that is only "." or ".." is
// refused when the URL is checked.
func escapePath(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// escapeHost lets through a value that can be part of a host name, an
// address or a port, and refuses any other: nothing in it may end the
// host or add user information.
func escapeHost(v any) (string, error) {
	s := text(v)
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._:[]", c) >= 0) {
			return "", &escapeError{fmt.Sprintf("%q cannot be written into the URL's host: a host name, address or port has only letters, digits and \"-._:[]\"", s)}
		}
	}
	return s, nil
}

// escapeHeader refuses a value with a control character: a line break
// would start another header.
func escapeHeader(v any) (string, error) {
	s := text(v)
	if strings.ContainsAny(s, "\r\n") {
		return "", &escapeError{"the value has a line break, which a header cannot carry"}
	}
	for _, c := range []byte(s) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return "", &escapeError{fmt.Sprintf("the value has the control character %q, which a header cannot carry", c)}
		}
	}
	return s, nil
}

// bodyPlace is where the body's actions write, by the Content-Type
// header the catalog entry sets: JSON unless it is written out and is
// something else, since a JSON-escaped value is harmless in any other
// body, while a raw one is not in JSON.
func bodyPlace(contentType string) place {
	if contentType == "" || strings.Contains(contentType, "{{") {
		return jsonValue
	}
	mt, _, err := mime.ParseMediaType(contentType)
	switch {
	case err != nil, mt == "application/json", strings.HasSuffix(mt, "+json"):
		return jsonValue
	case mt == "application/x-www-form-urlencoded":
		return formBody
	}
	return textBody
}

// escaper walks a parsed template in the order its text is written,
// tracks the place the literal text leads to, and gives each action that
// prints the escaper of its place.
type escaper struct {
	f    *field
	tmpl *template.Template
	// called records the place each {{define}}d template runs in, and
	// ends the place it leaves; a template called from two places is
	// refused.
	called, ends map[string]place
	err          error
}

// escape adds the escapers to f's template, which starts in place p.
func escape(f *field, p place) error {
	e := &escaper{f: f, tmpl: f.tmpl, called: map[string]place{}, ends: map[string]place{}}
	e.list(f.tmpl.Tree.Root, p)
	return e.err
}

func (e *escaper) fail(n parse.Node, format string, args ...any) {
	if e.err == nil {
		loc, _ := e.tmpl.ErrorContext(n)
		e.err = fmt.Errorf("template: %s: %s", loc, fmt.Sprintf(format, args...))
	}
}

func (e *escaper) list(l *parse.ListNode, p place) place {
	if l == nil {
		return p
	}
	for _, n := range l.Nodes {
		p = e.node(n, p)
	}
	return p
}

func (e *escaper) node(n parse.Node, p place) place {
	switch n := n.(type) {
	case *parse.TextNode:
		return e.scan(p, string(n.Text))
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 { // {{$x := ...}} prints nothing
			return p
		}
		return e.action(n, p)
	case *parse.IfNode:
		return e.branches(n, &n.BranchNode, p, false)
	case *parse.WithNode:
		return e.branches(n, &n.BranchNode, p, false)
	case *parse.RangeNode:
		return e.branches(n, &n.BranchNode, p, true)
	case *parse.TemplateNode:
		return e.call(n, p)
	}
	return p
}

// branches walks both branches of an if, with or range, which must end
// in the same place, and a range's body where it started, since it may
// run again.
func (e *escaper) branches(n parse.Node, b *parse.BranchNode, p place, loop bool) place {
	then := e.list(b.List, p)
	orElse := e.list(b.ElseList, p)
	then, orElse = settle(then), settle(orElse)
	switch {
	case loop && then != settle(p):
		e.fail(n, "the body of this {{range}} ends %s but starts %s; it must end where it starts, since it may run again", placeName(then), placeName(p))
	case then != orElse:
		e.fail(n, "one branch ends %s, another %s; both must end in the same place", placeName(then), placeName(orElse))
	}
	return then
}

// settle makes the places of a URL's path, query and fragment one, for
// comparing branches: an escaper of any of the three keeps a value where
// it is in the other two as well.
func settle(p place) place {
	if p == urlQuery || p == urlFragment {
		return urlPath
	}
	return p
}

// call walks a {{template}}'s definition in the place it is called from.
func (e *escaper) call(n *parse.TemplateNode, p place) place {
	if at, ok := e.called[n.Name]; ok {
		if at != p {
			e.fail(n, "template %q is called %s and %s; call it from one place only", n.Name, placeName(at), placeName(p))
		}
		return e.ends[n.Name]
	}
	t := e.tmpl.Lookup(n.Name)
	if t == nil || t.Tree == nil {
		return p // execution says it is not defined
	}
	e.called[n.Name], e.ends[n.Name] = p, p // a recursive call ends where it starts
	end := e.list(t.Tree.Root, p)
	e.ends[n.Name] = end
	return end
}

// action gives n the escaper of p, and notes an action that puts data
// into the URL's scheme or host.
func (e *escaper) action(n *parse.ActionNode, p place) place {
	switch p {
	case urlStart, urlBase, urlHost:
		if readsData(n.Pipe) && e.f.hostFrom == "" {
			e.f.hostFrom = n.String()
		}
	case jsonEscape:
		e.fail(n, `an action right after a backslash in a JSON string; write the escape out, or the value whole`)
		return p
	}
	if name, ok := escapers[p]; ok {
		n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
			NodeType: parse.NodeCommand, Pos: n.Pos,
			Args: []parse.Node{parse.NewIdentifier(name).SetPos(n.Pos)},
		})
	}
	if p == urlStart {
		return urlBase
	}
	return p
}

// scan moves p over the literal text s.
func (e *escaper) scan(p place, s string) place {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch p {
		case urlStart, urlBase:
			switch {
			case strings.HasPrefix(s[i:], "://"):
				p, i = urlHost, i+2
			case p == urlBase && c == '?':
				p = urlQuery
			case p == urlBase && c == '#':
				p = urlFragment
			}
		case urlHost:
			switch c {
			case '/':
				p = urlPath
			case '?':
				p = urlQuery
			case '#':
				p = urlFragment
			case '@':
				e.f.userinfo = true
			}
		case urlPath:
			switch c {
			case '?':
				p = urlQuery
			case '#':
				p = urlFragment
			}
		case urlQuery:
			if c == '#' {
				p = urlFragment
			}
		case jsonValue:
			if c == '"' {
				p = jsonString
			}
		case jsonString:
			switch c {
			case '\\':
				p = jsonEscape
			case '"':
				p = jsonValue
			}
		case jsonEscape:
			p = jsonString
		}
	}
	return p
}

// readsData reports whether a pipeline reads the template data: a field,
// a variable, or dot.
func readsData(n parse.Node) bool {
	switch n := n.(type) {
	case *parse.PipeNode:
		for _, c := range n.Cmds {
			if readsData(c) {
				return true
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			if readsData(a) {
				return true
			}
		}
	case *parse.ChainNode:
		return readsData(n.Node)
	case *parse.FieldNode, *parse.VariableNode, *parse.DotNode:
		return true
	}
	return false
}

func placeName(p place) string {
	switch p {
	case urlStart, urlBase:
		return "at the start of the URL"
	case urlHost:
		return "in the URL's host"
	case urlPath, urlQuery, urlFragment:
		return "in the URL's path or query"
	case jsonString, jsonEscape:
		return "inside a JSON string"
	case jsonValue:
		return "outside a JSON string"
	}
	return "in the text"
}

// unescaped returns the escaper's refusal err carries, if any.
func unescaped(err error) (*escapeError, bool) {
	var e *escapeError
	ok := errors.As(err, &e)
	return e, ok
}

// checkPath refuses a URL whose path has a "." or ".." segment, spelled
// out or percent-encoded: a server would resolve it into another path.
func checkPath(u *url.URL) error {
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if s, err := url.PathUnescape(seg); err == nil && (s == "." || s == "..") {
			return fmt.Errorf("url: %q has a %q segment in its path, which would lead elsewhere", u.Redacted(), s)
		}
	}
	return nil
}
