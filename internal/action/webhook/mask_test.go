package webhook_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/keptn-action-provider/action-provider/internal/action/webhook"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// TestEchoedSecretMasked checks the ways an answer that echoes the
// secret once got it into the finished message: each must show no part
// of the secret, in any of its forms.
func TestEchoedSecretMasked(t *testing.T) {
	b64 := func(e *base64.Encoding) string { return e.EncodeToString([]byte(token)) }
	tests := []struct {
		name string
		body string
	}{
		// Whitespace before the secret: collapsed, it pulled the
		// secret's start, unmasked, into the excerpt.
		{name: "padding before the cut", body: strings.Repeat(" ", 530) + token + " tail"},
		// The most that is read for an excerpt ends inside the secret.
		{name: "padding to the end of what is read", body: strings.Repeat(" ", 64<<10-8) + token},
		{name: "padding with line breaks", body: strings.Repeat("\n", 900) + token},
		{name: "cut inside the secret", body: strings.Repeat("x", 240) + token + strings.Repeat("y", 300)},
		// "***" is shorter than the secret: masked repetitions pulled an
		// unmasked start into the excerpt.
		{name: "repetition", body: strings.Repeat(token, 60)},
		{name: "repetition with separators", body: strings.Repeat(token+", ", 60)},
		{name: "base64", body: `{"auth": "` + b64(base64.StdEncoding) + `"}`},
		{name: "base64 URL", body: "token=" + b64(base64.URLEncoding)},
		{name: "base64 raw", body: "token=" + b64(base64.RawStdEncoding)},
		{name: "base64 URL raw", body: "token=" + b64(base64.RawURLEncoding)},
		{name: "Basic credential", body: "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+token))},
		{name: "lower-case percent-encoding", body: "key=s3cr3t-t0ken%2bwith%2fescapes"},
		{name: `JSON \/`, body: `{"key": "s3cr3t-t0ken+with\/escapes"}`},
		{name: `JSON \u00xx`, body: `{"key": "s3cr3t-t0ken\u002bwith\u002fescapes"}`},
		{name: "line break inside", body: "key:\n  s3cr3t-t0ken+\n  with/escapes\n"},
		{name: "base64 wrapped", body: b64(base64.StdEncoding)[:20] + "\r\n" + b64(base64.StdEncoding)[20:]},
	}
	for _, tt := range tests {
		for _, status := range []int{http.StatusOK, http.StatusBadRequest, http.StatusServiceUnavailable} {
			t.Run(tt.name+" "+http.StatusText(status), func(t *testing.T) {
				srv := newServer(t, answer(status, tt.body))
				opts := options()
				h := newHandler(t, webhook.Config{
					URL: srv.URL, Allow: []string{"loopback"}, Retries: intp(0),
					Secrets: map[string]secret.Ref{"token": {Env: "HOOK_TOKEN"}},
					Headers: map[string]string{"Authorization": `Bearer {{secret "token"}}`},
				}, opts)
				out, err := run(t, h, request())
				text := out.Message
				if err != nil {
					text = err.Error()
				}
				if leak := leaked(text); leak != "" {
					t.Errorf("message shows %q of the secret:\n%s", leak, text)
				}
				// What a log line would carry, through the shared masker.
				if leak := leaked(opts.Masker.String(text)); leak != "" {
					t.Errorf("log line shows %q", leak)
				}
			})
		}
	}
}

// leaked returns a piece of the secret, in one of its forms, that text
// shows: any 5 characters in a row of it, raw or base64-encoded.
func leaked(text string) string {
	for _, form := range []string{
		token,
		base64.StdEncoding.EncodeToString([]byte(token)),
		base64.URLEncoding.EncodeToString([]byte(token)),
		// After "user:" (7 characters, the 7th shared with the secret).
		base64.StdEncoding.EncodeToString([]byte("user:" + token))[7:],
	} {
		for i := 0; i+5 <= len(form); i++ {
			if strings.Contains(text, form[i:i+5]) {
				return form[i : i+5]
			}
		}
	}
	return ""
}

// TestExcerptSmall checks that a message echoes only a small excerpt of
// an answer, whatever Options.MaxExcerpt asks for.
func TestExcerptSmall(t *testing.T) {
	for _, maxExcerpt := range []int{0, 100, 100000} {
		srv := newServer(t, answer(http.StatusOK, strings.Repeat("z", 10000)))
		opts := options()
		opts.MaxExcerpt = maxExcerpt
		h := newHandler(t, webhook.Config{URL: srv.URL, Allow: []string{"loopback"}}, opts)
		out, err := run(t, h, request())
		if err != nil {
			t.Fatal(err)
		}
		shown := strings.Count(out.Message, "z")
		want := min(max(maxExcerpt, 0), webhook.MaxExcerpt)
		if maxExcerpt == 0 {
			want = webhook.DefaultMaxExcerpt
		}
		if shown != want {
			t.Errorf("MaxExcerpt %d: the message shows %d bytes of the answer, want %d", maxExcerpt, shown, want)
		}
	}
	if webhook.DefaultMaxExcerpt > 512 || webhook.MaxExcerpt > 512 {
		t.Errorf("excerpts of %d (default) and %d bytes are not small", webhook.DefaultMaxExcerpt, webhook.MaxExcerpt)
	}
}
