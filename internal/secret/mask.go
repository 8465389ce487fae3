package secret

import (
	"bytes"
	"encoding/base64"
	"strings"
	"sync"
	"unicode/utf8"
)

// Masker replaces every secret value it knows with Mask. The zero value
// knows none and is ready to use; it is safe for concurrent use.
//
// Text that leaves the provider may carry a secret in another form than
// the one it was read in: a server that echoes a request quotes it
// percent-encoded (in upper or lower case), JSON-escaped ("\/", "\u002f"),
// base64-encoded (a Basic credential), wrapped across lines, or all of
// these. So the Masker compares decoded text: it reads the text once with
// percent-encoding and JSON escapes decoded and whitespace left out, and
// looks there for each secret, raw and base64-encoded (standard and URL
// alphabets, padded or not, at any alignment within a longer base64
// string). What is masked is the stretch of the original text that the
// secret was decoded from.
type Masker struct {
	mu sync.RWMutex
	// needles are every form of every secret, decoded as the text is:
	// needles[false] with "+" read as itself, needles[true] with "+" read
	// as a space, which is only looked for when a secret has a space.
	needles map[bool][][]byte
	spaced  bool
}

const (
	// minLength keeps a very short value (a one-character test token) from
	// masking every occurrence of that character in every message.
	minLength = 4
	// minEncoded is the shortest base64 form looked for: a shorter one
	// would mask ordinary words.
	minEncoded = 6
	// MinPartial is the shortest start of a secret that TrimPartial drops
	// from the end of a text.
	MinPartial = 4
)

// Add makes m mask v from now on.
func (m *Masker) Add(v string) {
	if len(v) < minLength {
		return
	}
	forms := []string{v}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		raw := enc.WithPadding(base64.NoPadding)
		forms = append(forms, enc.EncodeToString([]byte(v)), raw.EncodeToString([]byte(v)))
		forms = append(forms, base64Cores(raw, []byte(v))...)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.needles == nil {
		m.needles = map[bool][][]byte{}
	}
	m.spaced = m.spaced || strings.ContainsRune(v, ' ')
	for i, f := range forms {
		shortest := minLength
		if i > 0 {
			shortest = minEncoded
		}
		// The text is decoded before it is compared, so the secret is
		// looked for decoded too; and as it is, in case the text spells
		// its escapes out (a "%41" in the secret, percent-encoded).
		for _, plus := range []bool{false, true} {
			for _, n := range [][]byte{decode(f, plus).b, squeeze(f, plus)} {
				if len(n) >= shortest && !has(m.needles[plus], n) {
					m.needles[plus] = append(m.needles[plus], n)
				}
			}
		}
	}
}

func has(needles [][]byte, n []byte) bool {
	for _, h := range needles {
		if bytes.Equal(h, n) {
			return true
		}
	}
	return false
}

// base64Cores are the characters of v's base64 encoding that do not
// depend on what comes before or after v, when v starts 0, 1 or 2 bytes
// into a longer base64-encoded string: "user:" + token in a Basic
// credential moves the token off the 3-byte grid.
func base64Cores(enc *base64.Encoding, v []byte) []string {
	var cores []string
	for k := range 3 {
		s := enc.EncodeToString(append(make([]byte, k), v...))
		// Character i holds bits 6i to 6i+6; v's are 8k to 8k+8len(v).
		start, end := (8*k+5)/6, (8*k+8*len(v))/6
		cores = append(cores, s[start:end])
	}
	return cores
}

// String returns s with every known secret replaced by Mask.
func (m *Masker) String(s string) string {
	if m == nil {
		return s
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	spans := m.find(s)
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	at := 0
	for _, sp := range spans {
		b.WriteString(s[at:sp[0]])
		b.WriteString(Mask)
		at = sp[1]
	}
	b.WriteString(s[at:])
	return b.String()
}

// Contains reports whether s carries a known secret, in any form String
// masks.
func (m *Masker) Contains(s string) bool {
	if m == nil {
		return false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.find(s)) > 0
}

// TrimPartial drops the end of s when it is the start, MinPartial bytes
// or more, of a secret in any form: the edge of a text cut short, which
// String cannot recognise as a secret. Mask s first.
func (m *Masker) TrimPartial(s string) string {
	if m == nil {
		return s
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	// A text cut in the middle of an escape ("%2", "\u00") is compared
	// without it.
	t := s[:len(s)-len(partialEscape(s))]
	cut := len(s)
	for _, plus := range m.passes() {
		d := decode(t, plus)
		for _, n := range m.needles[plus] {
			for k := min(len(n), len(d.b)); k >= MinPartial; k-- {
				if bytes.HasSuffix(d.b, n[:k]) {
					cut = min(cut, d.from[len(d.b)-k])
					break
				}
			}
		}
	}
	return s[:cut]
}

// partialEscape is the escape s ends in the middle of, if any: "%", "%2",
// "\\", "\\u", ... "\\u002".
func partialEscape(s string) string {
	for n := 1; n <= 5 && n <= len(s); n++ {
		tail := s[len(s)-n:]
		switch {
		case tail[0] == '%' && n < 3 && allHex(tail[1:]),
			tail[0] == '\\' && (n == 1 || tail[1] == 'u' && allHex(tail[2:])):
			return tail
		}
	}
	return ""
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// passes says how s is read: with "+" as itself, and also as a space when
// a secret has one.
func (m *Masker) passes() []bool {
	if m.spaced {
		return []bool{false, true}
	}
	return []bool{false}
}

// find returns the stretches of s, sorted and merged, that decode to a
// secret.
func (m *Masker) find(s string) [][2]int {
	if len(m.needles[false]) == 0 || len(s) < minLength {
		return nil
	}
	var spans [][2]int
	for _, plus := range m.passes() {
		d := decode(s, plus)
		for _, n := range m.needles[plus] {
			for at := 0; ; {
				i := bytes.Index(d.b[at:], n)
				if i < 0 {
					break
				}
				i += at
				spans = append(spans, [2]int{d.from[i], d.to[i+len(n)-1]})
				at = i + 1
			}
		}
	}
	return merge(spans)
}

// merge sorts spans and joins those that overlap or touch.
func merge(spans [][2]int) [][2]int {
	if len(spans) < 2 {
		return spans
	}
	for i := 1; i < len(spans); i++ { // insertion sort: there are few
		for j := i; j > 0 && spans[j][0] < spans[j-1][0]; j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
	out := spans[:1]
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if sp[0] <= last[1] {
			last[1] = max(last[1], sp[1])
			continue
		}
		out = append(out, sp)
	}
	return out
}

// decoded is text read for comparison: b, and for each byte of b the
// stretch of the text, from[i] to to[i], it was decoded from.
type decoded struct {
	b        []byte
	from, to []int
}

func (d *decoded) add(c byte, from, to int) {
	if isSpace(c) {
		return
	}
	d.b = append(d.b, c)
	d.from = append(d.from, from)
	d.to = append(d.to, to)
}

// decode reads s with percent-encoding ("%2F", "%2f") and JSON escapes
// ("\/", "\"", "\u002F") decoded once, and whitespace, decoded or not,
// left out; plus reads "+" as a space.
func decode(s string, plus bool) decoded {
	d := decoded{b: make([]byte, 0, len(s)), from: make([]int, 0, len(s)), to: make([]int, 0, len(s))}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			d.add(unhex(s[i+1])<<4|unhex(s[i+2]), i, i+3)
			i += 3
		case c == '\\' && i+5 < len(s) && s[i+1] == 'u' && isHex(s[i+2]) && isHex(s[i+3]) && isHex(s[i+4]) && isHex(s[i+5]):
			r := rune(unhex(s[i+2]))<<12 | rune(unhex(s[i+3]))<<8 | rune(unhex(s[i+4]))<<4 | rune(unhex(s[i+5]))
			for _, b := range utf8.AppendRune(nil, r) {
				d.add(b, i, i+6)
			}
			i += 6
		case c == '\\' && i+1 < len(s) && strings.IndexByte(`"\/bfnrt`, s[i+1]) >= 0:
			d.add(unescape(s[i+1]), i, i+2)
			i += 2
		case c == '+' && plus:
			i++
		default:
			d.add(c, i, i+1)
			i++
		}
	}
	return d
}

// squeeze is s with whitespace, and with plus "+", left out, and nothing
// decoded.
func squeeze(s string, plus bool) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isSpace(c) && !(plus && c == '+') {
			b = append(b, c)
		}
	}
	return b
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// unescape is the byte of JSON's two-character escape `\c`.
func unescape(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c
}
