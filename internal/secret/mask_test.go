package secret

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestMaskerForms checks the forms a secret may be echoed in, each of
// which got past the Masker once.
func TestMaskerForms(t *testing.T) {
	const tok = "s3cr3t-t0ken+with/escapes"
	quoted, _ := json.Marshal(tok)
	b64 := func(e *base64.Encoding, s string) string { return e.EncodeToString([]byte(s)) }
	tests := []struct {
		name string
		text string
		want string
	}{
		{name: "raw", text: "got " + tok + ".", want: "got ***."},
		{name: "repeated", text: tok + tok + " and " + tok, want: "*** and ***"},
		{name: "query escaped", text: "key=" + url.QueryEscape(tok) + "&q=1", want: "key=***&q=1"},
		{name: "path escaped", text: "/hooks/" + url.PathEscape(tok) + "/x", want: "/hooks/***/x"},
		{name: "lower-case percent-encoding", text: "key=s3cr3t-t0ken%2bwith%2fescapes&q=1", want: "key=***&q=1"},
		{name: "every byte percent-encoded", text: "k=" + percentAll(tok) + "!", want: "k=***!"},
		{name: "JSON quoted", text: `{"k":` + string(quoted) + `}`, want: `{"k":"***"}`},
		{name: `JSON \/`, text: `{"k":"s3cr3t-t0ken+with\/escapes"}`, want: `{"k":"***"}`},
		{name: `JSON \u00xx`, text: `{"k":"s3cr3t-t0ken\u002bwith\u002Fescapes"}`, want: `{"k":"***"}`},
		{name: "JSON, every byte escaped", text: `"` + jsonAll(tok) + `"`, want: `"***"`},
		{name: "line break inside", text: "token: s3cr3t-t0k\nen+with/escapes end", want: "token: *** end"},
		{name: "CRLF and indent inside", text: "token: s3cr3t-t0ken+wi\r\n    th/escapes end", want: "token: *** end"},
		{name: `JSON \n inside`, text: `"s3cr3t-t0ken+with\n/escapes"`, want: `"***"`},
		{name: "base64", text: "b=" + b64(base64.StdEncoding, tok) + ";", want: "b=***;"},
		{name: "base64 raw", text: "b=" + b64(base64.RawStdEncoding, tok) + ";", want: "b=***;"},
		{name: "base64 URL", text: "b=" + b64(base64.URLEncoding, tok) + ";", want: "b=***;"},
		{name: "base64 URL raw", text: "b=" + b64(base64.RawURLEncoding, tok) + ";", want: "b=***;"},
		{name: "base64 percent-encoded", text: "b=" + url.QueryEscape(b64(base64.StdEncoding, tok)) + ";", want: "b=***;"},
		{name: "base64 wrapped", text: "b=" + wrap(b64(base64.StdEncoding, tok), 8) + ";", want: "b=***;"},
		{
			// A Basic credential: the secret is off the 3-byte grid.
			name: "inside a longer base64 string",
			text: "Basic " + b64(base64.StdEncoding, "user:"+tok),
			// Only the character that mixes ":" and the secret's first bits
			// shows.
			want: "Basic dXNlcjp***",
		},
		{name: "nothing else masked", text: "s3cr3t-t0ken with escapes", want: "s3cr3t-t0ken with escapes"},
	}
	var m Masker
	m.Add(tok)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.String(tt.text)
			if got != tt.want {
				t.Errorf("String(%q)\n = %q\nwant %q", tt.text, got, tt.want)
			}
			if !m.Contains(tt.text) != (got == tt.text) {
				t.Errorf("Contains(%q) = %v", tt.text, m.Contains(tt.text))
			}
		})
	}
}

func TestMaskerSpace(t *testing.T) {
	var m Masker
	m.Add("pass phrase 42")
	for text, want := range map[string]string{
		"p=pass+phrase+42&x=1":     "p=***&x=1",
		"p=pass%20phrase%2042&x=1": "p=***&x=1",
		"p: pass phrase 42.":       "p: ***.",
	} {
		if got := m.String(text); got != want {
			t.Errorf("String(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestTrimPartial(t *testing.T) {
	const tok = "s3cr3t-t0ken+with/escapes"
	tests := []struct {
		text, want string
	}{
		{text: "answer: s3cr", want: "answer: "},
		{text: "answer: s3cr3t-t0ken+wi", want: "answer: "},
		{text: "answer: s3c", want: "answer: s3c"}, // too short to say
		{text: "answer: s3cr3t-t0ken%2", want: "answer: "},
		{text: `answer: s3cr3t-t0ken\u00`, want: "answer: "},
		{text: "answer: 100%", want: "answer: 100%"},
		{text: "answer: s3cr3t-t0ken%2Bwi", want: "answer: "},
		{text: "answer: s3cr\n3t-t", want: "answer: "},
		{text: "b=" + base64.StdEncoding.EncodeToString([]byte(tok))[:10], want: "b="},
		{text: "answer: ok", want: "answer: ok"},
		{text: "", want: ""},
	}
	var m Masker
	m.Add(tok)
	for _, tt := range tests {
		if got := m.TrimPartial(tt.text); got != tt.want {
			t.Errorf("TrimPartial(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}

// percentAll percent-encodes every byte of s, in lower case.
func percentAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02x", s[i])
	}
	return b.String()
}

// jsonAll JSON-escapes every byte of s as \u00XX.
func jsonAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, `\u%04X`, s[i])
	}
	return b.String()
}

func wrap(s string, n int) string {
	var lines []string
	for len(s) > n {
		lines = append(lines, s[:n])
		s = s[n:]
	}
	return strings.Join(append(lines, s), "\r\n")
}
