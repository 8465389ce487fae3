package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"text/template/parse"

	template "github.com/DataDog/datadog-agent/pkg/template/text"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/action"
)

// Data is what the url, headers and body templates see. A field a
// template names that Data does not have is a configuration error at
// start-up; a key of .Labels or .Value that the event does not have fails
// that run of the action, naming the field (templates run with
// missingkey=error, so a missing label is never sent as "<no value>").
type Data struct {
	// Project, Stage and Service are the event's.
	Project string
	Stage   string
	Service string
	// Labels are the event's labels: {{.Labels.owner}}, or
	// {{index .Labels "team-name"}} for a key that is not an identifier
	// (index gives "" for a missing key rather than an error).
	Labels map[string]string
	// Action is the action name as the event carried it, which may be an
	// alias of the catalog entry's name.
	Action string
	// Value is the action's value from remediation.yaml, decoded from JSON:
	// nil when there is none, otherwise a map[string]any, []any, string,
	// bool or json.Number (numbers keep the digits they were written with).
	Value any
	// Problem is the problem that started the remediation:
	// .Problem.ProblemTitle and .Problem.RootCause.
	Problem keptnv2.ProblemDetails
	// KeptnContext and TriggeredID identify the event, e.g. for an
	// idempotency key.
	KeptnContext string
	TriggeredID  string
}

// newData makes the template data of a request; value is decoded as
// action.Decode does, numbers kept as json.Number.
func newData(name string, req action.Request) (Data, error) {
	d := Data{
		Project: req.Project, Stage: req.Stage, Service: req.Service,
		Labels: req.Labels, Action: req.Action, Problem: req.Problem,
		KeptnContext: req.KeptnContext, TriggeredID: req.TriggeredID,
	}
	if d.Action == "" {
		d.Action = name
	}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	if len(bytes.TrimSpace(req.Value)) > 0 {
		if err := action.Decode(req.Value, &d.Value, false); err != nil {
			return Data{}, err
		}
	}
	return d, nil
}

// funcs are the template functions besides text/template's builtins
// (urlquery, printf, index, ...).
func (h *Handler) funcs() template.FuncMap {
	fs := escapeFuncs()
	fs["secret"] = h.secret
	return fs
}

// secret is the template function {{secret "name"}}: the value of the
// secret settings.secrets names so.
func (h *Handler) secret(name string) (string, error) {
	if v, ok := h.secrets[name]; ok {
		return v, nil
	}
	return "", fmt.Errorf("no secret %q in settings.secrets (%s)", name, h.secretNames())
}

func (h *Handler) secretNames() string {
	if len(h.secrets) == 0 {
		return "there are none"
	}
	names := make([]string, 0, len(h.secrets))
	for n := range h.secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	return "it has " + strings.Join(names, ", ")
}

// toJSON is the template function {{json .Value}}: v as JSON, for bodies.
// A string comes out quoted and escaped, so {"title": {{json
// .Problem.ProblemTitle}}} stays valid JSON whatever the title holds.
func toJSON(v any) (jsonText, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return jsonText(strings.TrimSuffix(b.String(), "\n")), nil
}

// field is one templated setting: the url, one header or the body.
type field struct {
	// name is the setting's path, "url", "headers.Authorization", which
	// every error about it starts with.
	name string
	tmpl *template.Template
	// usesValue is set when the template reads .Value somewhere: its
	// result then depends on the event's value, which start-up does not
	// have.
	usesValue bool
	// idents are the identifiers of every field chain, so that a sample
	// can give .Labels every key the template may ask for.
	idents []string
	// usesSecret is set when the template calls secret.
	usesSecret bool
	// hostFrom is the first action that puts data into the URL's scheme
	// or host, "{{.Labels.host}}"; userinfo is set when the URL's literal
	// text has user information. Only the url sets them.
	hostFrom string
	userinfo bool
}

// parseField parses and statically checks one template, and makes it
// escape what it writes for the place p it starts in; see escape.go.
func (h *Handler) parseField(name, text string, p place) (*field, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(h.funcs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	f := &field{name: name, tmpl: t}
	// The template itself first, then any {{define}}d, by name, so that
	// the error reported is always the same one.
	all := t.Templates()
	sort.Slice(all, func(i, j int) bool {
		if (all[i].Name() == name) != (all[j].Name() == name) {
			return all[i].Name() == name
		}
		return all[i].Name() < all[j].Name()
	})
	for _, tt := range all {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		c := checker{h: h, tree: tt.Tree, f: f}
		// The data is the dot of the template itself; a {{define}}d
		// one gets whatever it is passed.
		root := dataType
		if tt.Name() != name {
			root = nil
		}
		c.root = root
		c.walk(tt.Tree.Root, root)
		if c.err != nil {
			return nil, fmt.Errorf("%s: %w", name, c.err)
		}
	}
	if err := escape(f, p); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

// execute runs the template on d.
func (f *field) execute(d Data) (string, error) {
	var b strings.Builder
	if err := f.tmpl.Execute(&b, d); err != nil {
		if e, ok := unescaped(err); ok {
			return "", fmt.Errorf("%s: %w", f.name, e)
		}
		return "", fmt.Errorf("%s: %w", f.name, err)
	}
	return b.String(), nil
}

var dataType = reflect.TypeFor[Data]()

// checker walks a parsed template and finds what can be found without an
// event: a field Data does not have (.Projet, .Problem.State), and a
// secret settings.secrets does not declare. It records the first error.
type checker struct {
	h    *Handler
	tree *parse.Tree
	f    *field
	root reflect.Type // the type of $; nil when unknown
	err  error
}

// walk checks node, whose dot is of type dot (nil: unknown).
func (c *checker) walk(node parse.Node, dot reflect.Type) {
	if c.err != nil || node == nil {
		return
	}
	switch n := node.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, child := range n.Nodes {
			c.walk(child, dot)
		}
	case *parse.ActionNode:
		c.walk(n.Pipe, dot)
	case *parse.IfNode:
		c.walk(n.Pipe, dot)
		c.walk(n.List, dot)
		c.walk(n.ElseList, dot)
	case *parse.WithNode:
		c.walk(n.Pipe, dot)
		c.walk(n.List, nil)
		c.walk(n.ElseList, dot)
	case *parse.RangeNode:
		c.walk(n.Pipe, dot)
		c.walk(n.List, nil)
		c.walk(n.ElseList, dot)
	case *parse.TemplateNode:
		c.walk(n.Pipe, dot)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, cmd := range n.Cmds {
			c.walk(cmd, dot)
		}
	case *parse.CommandNode:
		c.secretCall(n)
		for _, arg := range n.Args {
			c.walk(arg, dot)
		}
	case *parse.FieldNode:
		c.chain(n, dot, n.Ident)
	case *parse.VariableNode:
		if n.Ident[0] == "$" {
			c.chain(n, c.root, n.Ident[1:])
		} else {
			c.chain(n, nil, n.Ident[1:])
		}
	case *parse.ChainNode:
		c.walk(n.Node, dot)
		c.chain(n, nil, n.Field)
	}
}

// secretCall checks the name of {{secret "name"}} when it is written out.
func (c *checker) secretCall(n *parse.CommandNode) {
	if len(n.Args) == 0 {
		return
	}
	if id, ok := n.Args[0].(*parse.IdentifierNode); !ok || id.Ident != "secret" {
		return
	}
	c.f.usesSecret = true
	if len(n.Args) < 2 {
		return
	}
	if s, ok := n.Args[1].(*parse.StringNode); ok {
		if _, err := c.h.secret(s.Text); err != nil {
			c.fail(n, err)
		}
	}
}

// chain checks the field names idents against t, as far as t is a known
// struct: a map or an interface (.Labels, .Value) can hold anything.
func (c *checker) chain(n parse.Node, t reflect.Type, idents []string) {
	c.f.idents = append(c.f.idents, idents...)
	for _, id := range idents {
		if id == "Value" {
			c.f.usesValue = true
		}
	}
	path := ""
	for _, id := range idents {
		if t == nil {
			return
		}
		switch t.Kind() {
		case reflect.Map, reflect.Interface:
			return
		case reflect.Struct:
			f, ok := t.FieldByName(id)
			if !ok || !f.IsExported() {
				c.fail(n, fmt.Errorf(".%s is not in the template data; %s has %s", strings.TrimPrefix(path+"."+id, "."), orDot(path), fieldList(t)))
				return
			}
			path += "." + id
			t = f.Type
		default:
			c.fail(n, fmt.Errorf("%s is a %s, which has no field %s", orDot(path), t.Kind(), id))
			return
		}
	}
}

func orDot(path string) string {
	if path == "" {
		return "the data"
	}
	return path
}

// fieldList lists the exported fields of struct t for an error:
// ".ProblemTitle and .RootCause".
func fieldList(t reflect.Type) string {
	var names []string
	for f := range t.Fields() {
		if f.IsExported() {
			names = append(names, "."+f.Name)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// fail records err at n, located as text/template locates its own errors:
// "template: url:1:7: ...".
func (c *checker) fail(n parse.Node, err error) {
	if c.err != nil {
		return
	}
	loc, _ := c.tree.ErrorContext(n)
	c.err = fmt.Errorf("template: %s: %w", loc, err)
}

// sample is a request with made-up but plausible data, to run the
// templates on before any event arrives. .Labels has every identifier the
// templates use as a key, so that {{.Labels.owner}} succeeds; value is the
// action value to try, nil for none.
func (h *Handler) sample(value json.RawMessage) (Data, error) {
	labels := map[string]string{}
	for _, f := range h.fields() {
		for _, id := range f.idents {
			labels[id] = "sample-" + strings.ToLower(id)
		}
	}
	return newData(h.name, action.Request{
		Value:   value,
		Project: "sample-project", Stage: "sample-stage", Service: "sample-service",
		Labels:       labels,
		Problem:      keptnv2.ProblemDetails{ProblemTitle: "sample problem title", RootCause: "sample root cause"},
		KeptnContext: "00000000-0000-4000-8000-000000000000",
		TriggeredID:  "00000000-0000-4000-8000-000000000001",
	})
}
