package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/webhook/egress"
)

// drainLimit is how much of an answer's body beyond the excerpt is read,
// to count it and to let the connection be reused; past it, the message
// says "at least".
const drainLimit = 1 << 20

// maskWindow is how much of an answer's body is read, and masked whole,
// to take an excerpt from.
const maskWindow = 64 << 10

// send makes the attempts, spaced by h.backoff, and turns their answers
// into the action's outcome.
func (h *Handler) send(ctx context.Context, r *rendered, line string) (action.Outcome, error) {
	s := &sending{h: h, r: r, line: line, attempts: 1 + h.retries}
	if err := h.backoff.Do(ctx, s.attempt, nil); err != nil {
		return action.Outcome{}, err
	}
	return s.outcome, nil
}

// sending is the state of one run's attempts.
type sending struct {
	h        *Handler
	r        *rendered
	line     string // "POST https://hooks.example.com/x", for messages
	attempts int    // how many may be made
	n        int    // how many were made
	failures []failure
	// notBefore is when the next attempt may start, as a Retry-After
	// header asked.
	notBefore time.Time
	outcome   action.Outcome
}

// failure is an attempt that may be tried again.
type failure struct {
	// what it did, as the predicate of a sentence whose subject is the
	// request: "answered 503 Service Unavailable", "failed".
	what string
	// detail is ": " and the answer's excerpt or the error, or empty.
	detail     string
	retryAfter time.Duration
}

func (f failure) Error() string { return f.what + f.detail }

// attempt is one try, for retry.Backoff.Do: retry true with the failure,
// or false with the final error, or false and nil with s.outcome set.
func (s *sending) attempt(ctx context.Context) (bool, error) {
	if wait := time.Until(s.notBefore); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, s.stopped(ctx, fmt.Sprintf("while waiting after attempt %d of %d, as Retry-After asked", s.n, s.attempts))
		case <-t.C:
		}
	}
	s.n++
	f, done, err := s.once(ctx)
	switch {
	case err != nil:
		return false, err
	case done:
		return false, nil
	}
	s.failures = append(s.failures, f)
	if ctx.Err() != nil {
		return false, s.stopped(ctx, fmt.Sprintf("after attempt %d of %d", s.n, s.attempts))
	}
	if s.n >= s.attempts {
		return false, s.exhausted("")
	}
	if f.retryAfter > 0 {
		wait := min(f.retryAfter, s.h.maxRetryAfter)
		s.notBefore = time.Now().Add(wait)
		if deadline, ok := ctx.Deadline(); ok && deadline.Before(s.notBefore) {
			return false, s.exhausted(fmt.Sprintf("; it asked to wait %s before trying again (Retry-After), which is past the action's deadline", wait))
		}
	}
	return true, fmt.Errorf("%s %w", s.line, f)
}

// once makes one attempt. It returns the failure of an attempt worth
// repeating; done with s.outcome set for a final answer; or a final error.
func (s *sending) once(ctx context.Context) (_ failure, done bool, _ error) {
	actx, cancel := context.WithTimeout(ctx, s.h.timeout)
	defer cancel()
	var body io.Reader = http.NoBody
	if s.h.body != nil {
		body = strings.NewReader(s.r.body)
	}
	req, err := http.NewRequestWithContext(actx, s.h.method, s.r.url.String(), body)
	if err != nil {
		return failure{}, false, fmt.Errorf("%s: %w", s.line, err)
	}
	req.Header = s.r.header.Clone()
	var hops []hop
	client := &http.Client{Transport: s.h.transport, CheckRedirect: s.checkRedirect(&hops)}
	resp, err := client.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return s.failed(ctx, actx, hops, err)
	}
	defer resp.Body.Close()
	excerpt := s.h.excerpt(resp.Body)
	answered := "answered " + statusText(resp.StatusCode)
	if len(hops) > 0 {
		answered = fmt.Sprintf("was redirected to %s, which answered %s", s.h.show(hops[len(hops)-1].url), statusText(resp.StatusCode))
	}
	switch code := resp.StatusCode; {
	case s.h.succeeded(code):
		on := ""
		if s.n > 1 {
			on = fmt.Sprintf(" on attempt %d of %d", s.n, s.attempts)
		}
		s.outcome = action.Pass(s.line + " " + answered + on + excerpt)
		return failure{}, true, nil
	case code == http.StatusTooManyRequests || code >= 500:
		f := failure{what: answered, detail: excerpt}
		f.retryAfter, _ = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		return f, false, nil
	default:
		s.outcome = action.Fail(fmt.Sprintf("%s %s, which is not %s%s", s.line, answered, s.h.successText(), excerpt))
		return failure{}, true, nil
	}
}

// failed sorts out an attempt that got no answer: a refusal or a
// redirect that was not followed is final, and so is an invalid
// certificate, which another attempt would find again; a timeout of the
// attempt or a connection error is worth another try.
func (s *sending) failed(ctx, actx context.Context, hops []hop, err error) (failure, bool, error) {
	var (
		denied      *egress.Denied
		notFollowed *redirectError
		certErr     *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &denied):
		return failure{}, false, s.h.refusal(s.line, hops, denied)
	case errors.As(err, &notFollowed):
		return failure{}, false, s.h.notFollowed(s.line, hops, notFollowed)
	case ctx.Err() != nil:
		return failure{}, false, s.stopped(ctx, fmt.Sprintf("during attempt %d of %d", s.n, s.attempts))
	case actx.Err() != nil:
		return failure{what: fmt.Sprintf("got no answer within %s (settings.timeout)", s.h.timeout)}, false, nil
	case errors.As(err, &certErr):
		return failure{}, false, fmt.Errorf("%s: %w", s.line, cause(err))
	}
	return failure{what: "failed", detail: ": " + cause(err).Error()}, false, nil
}

// cause drops the *url.Error around a client error: it repeats the method
// and the URL, unmasked, that the message already has.
func cause(err error) error {
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}

// exhausted is the error of the last failed attempt, saying how many
// there were; more is appended.
func (s *sending) exhausted(more string) error {
	last := s.failures[len(s.failures)-1]
	same := true
	for _, f := range s.failures {
		same = same && f.what == last.what
	}
	switch n := len(s.failures); {
	case n == 1:
		return fmt.Errorf("%s %s%s%s", s.line, last.what, more, last.detail)
	case same:
		return fmt.Errorf("%s %s %d times%s%s", s.line, last.what, n, more, last.detail)
	default:
		return fmt.Errorf("%s failed %d times; the last attempt %s%s%s", s.line, n, last.what, more, last.detail)
	}
}

// stopped is the error of attempts cut short by the action's context,
// when says when: "during attempt 2 of 3".
func (s *sending) stopped(ctx context.Context, when string) error {
	err := fmt.Errorf("%s: stopped %s: %w", s.line, when, context.Cause(ctx))
	if len(s.failures) > 0 {
		last := s.failures[len(s.failures)-1]
		err = fmt.Errorf("%w; the last failed attempt %s%s", err, last.what, last.detail)
	}
	return err
}

// hop is a redirect that was followed, or is about to be.
type hop struct {
	url    *url.URL
	status int
}

// redirectError is a redirect not followed for a reason other than the
// egress rules: too many of them, or a secret that would go elsewhere.
type redirectError struct {
	reason string
	// refused marks a rule's refusal rather than an error.
	refused bool
}

func (e *redirectError) Error() string { return e.reason }

// checkRedirect is the client's CheckRedirect for one attempt: it records
// each redirect in hops, and refuses it by the egress rules before
// anything is sent to its target. A 3xx in settings.successStatus is an
// answer, not a redirect.
func (s *sending) checkRedirect(hops *[]hop) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		status := req.Response.StatusCode
		if s.h.succeeded(status) {
			return http.ErrUseLastResponse
		}
		*hops = append(*hops, hop{url: req.URL, status: status})
		if len(via) > MaxRedirects {
			return &redirectError{reason: fmt.Sprintf("that is more than %d redirects", MaxRedirects)}
		}
		if err := s.h.policy.CheckURL(req.URL); err != nil {
			return err
		}
		if req.URL.Host != via[0].URL.Host {
			// Go's client drops Authorization and cookies on the way to
			// another host; a secret in any other header goes the same
			// way, and a body with a secret is not sent there at all.
			for name, values := range req.Header {
				if s.h.hasSecret(values...) {
					req.Header.Del(name)
				}
			}
			if req.Body != nil && req.Body != http.NoBody && s.h.hasSecret(s.r.body) {
				return &redirectError{refused: true, reason: fmt.Sprintf(
					"a %d redirect resends the body, which carries a secret, and it would go to another host; point url at the final address instead", status)}
			}
		}
		return nil
	}
}

// refusal is the *action.Refusal of a destination the egress rules
// refuse, hops the redirects that led there; an error of another kind
// (not http or https) is returned as an error.
func (h *Handler) refusal(line string, hops []hop, err error) error {
	var d *egress.Denied
	if !errors.As(err, &d) {
		if len(hops) > 0 {
			return fmt.Errorf("%s, which was not followed: %w", h.redirected(line, hops), err)
		}
		return fmt.Errorf("%s: %w", line, err)
	}
	if len(hops) == 0 {
		return action.Refuse(RefusalRule, "%s: %s", line, d)
	}
	return action.Refuse(RefusalRule, "%s, which was not followed: %s", h.redirected(line, hops), d)
}

// notFollowed is the error, or refusal, of a redirect not followed.
func (h *Handler) notFollowed(line string, hops []hop, e *redirectError) error {
	if e.refused {
		return action.Refuse(RefusalRule, "%s, which was not followed: %s", h.redirected(line, hops), e.reason)
	}
	return fmt.Errorf("%s, which was not followed: %s", h.redirected(line, hops), e.reason)
}

// redirected says where the request was redirected last:
// "POST http://a/hook was redirected (302 Found) to http://b/x".
func (h *Handler) redirected(line string, hops []hop) string {
	last := hops[len(hops)-1]
	if len(hops) == 1 {
		return fmt.Sprintf("%s was redirected (%s) to %s", line, statusText(last.status), h.show(last.url))
	}
	return fmt.Sprintf("%s was redirected %d times, the last time (%s) to %s", line, len(hops), statusText(last.status), h.show(last.url))
}

// hasSecret reports whether any of ss carries one of the webhook's
// secrets, in any form the masker knows.
func (h *Handler) hasSecret(ss ...string) bool {
	for _, s := range ss {
		if h.own.Contains(s) {
			return true
		}
	}
	return false
}

// succeeded reports whether code passes the action.
func (h *Handler) succeeded(code int) bool {
	if h.success == nil {
		return code >= 200 && code <= 299
	}
	for _, s := range h.success {
		if code == s {
			return true
		}
	}
	return false
}

// successText names the statuses that pass, for a failed action's
// message.
func (h *Handler) successText() string {
	if h.success == nil {
		return "a success (any 2xx)"
	}
	codes := make([]string, len(h.success))
	for i, c := range h.success {
		codes[i] = strconv.Itoa(c)
	}
	return "in settings.successStatus (" + strings.Join(codes, ", ") + ")"
}

// excerpt reads the start of an answer's body for a message: ": " and at
// most h.maxExcerpt bytes, secrets masked, whitespace collapsed, and
// "…[N more bytes]" when there is more. It masks all it reads, up to
// maskWindow, before it collapses whitespace or cuts anything, so that
// neither splits a secret where the masker would no longer see it; and it
// drops a secret's start from where it cuts. The rest is read and counted
// up to drainLimit, which lets the connection be reused.
func (h *Handler) excerpt(body io.Reader) string {
	buf, err := io.ReadAll(io.LimitReader(body, maskWindow))
	var rest int64
	if err == nil {
		rest, err = io.Copy(io.Discard, io.LimitReader(body, drainLimit+1))
	}
	text := strings.Join(strings.Fields(strings.ToValidUTF8(h.masker.String(string(buf)), "\uFFFD")), " ")
	shown := text
	if len(text) > h.maxExcerpt || rest > 0 {
		shown = strings.TrimSpace(h.masker.TrimPartial(prefix(text, h.maxExcerpt)))
	}
	more := int64(len(text)-len(shown)) + rest
	var b strings.Builder
	if shown != "" {
		b.WriteString(": " + shown)
	}
	switch {
	case rest > drainLimit:
		fmt.Fprintf(&b, "…[at least %d more bytes]", more)
	case more > 0:
		fmt.Fprintf(&b, "…[%d more bytes]", more)
	}
	if err != nil {
		fmt.Fprintf(&b, " (reading the rest failed: %v)", err)
	}
	return b.String()
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// statusText is "503 Service Unavailable".
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return fmt.Sprintf("%d %s", code, t)
	}
	return strconv.Itoa(code)
}
