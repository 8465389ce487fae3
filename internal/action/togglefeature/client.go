package togglefeature

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/retry"
)

// maxBody bounds what is read of an answer: a flag with many strategies is
// a few KiB, and an error page should not fill the memory.
const maxBody = 1 << 20

// client calls Unleash's admin API with one token, a timeout per request
// and retries.
type client struct {
	base    string // the configured URL without a trailing slash
	token   string
	http    *http.Client
	timeout time.Duration
	retries int
	backoff retry.Backoff
}

// statusError is an answer other than 2xx. Its text is what a person needs
// to tell a wrong token from a missing flag from an overloaded server: the
// status and Unleash's own message.
type statusError struct {
	Code    int
	Message string // Unleash's "message", or the start of the body
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("%d %s", e.Code, http.StatusText(e.Code))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// statusOf returns the HTTP status of err, or 0 when Unleash gave none.
func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// transientError is a failed attempt worth repeating: no connection, no
// answer in time, or a status that says "later".
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// call sends one request, again on a transient failure, and decodes a 2xx
// JSON answer into out (when not nil). The error of the last attempt is
// returned, with the number of attempts when there was more than one.
func (c *client) call(ctx context.Context, method, path string, out any) error {
	attempts := 0
	err := c.backoff.Do(ctx, func(ctx context.Context) (bool, error) {
		attempts++
		err := c.once(ctx, method, path, out)
		var te *transientError
		return errors.As(err, &te) && attempts <= c.retries && ctx.Err() == nil, err
	}, nil)
	if err != nil && attempts > 1 {
		return fmt.Errorf("%w (%d attempts)", err, attempts)
	}
	return err
}

// once is one attempt of call, bounded by the request timeout.
func (c *client) once(ctx context.Context, method, path string, out any) error {
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	// Unleash admin API tokens go as they are, without "Bearer".
	req.Header.Set("Authorization", c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			// The action's own deadline or a shutdown: not worth a retry.
			return fmt.Errorf("%s %s: %w", method, path, context.Cause(ctx))
		case rctx.Err() != nil:
			return &transientError{fmt.Errorf("%s %s: no answer within %s", method, path, c.timeout)}
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is said once, by whoever reports this
		}
		return &transientError{fmt.Errorf("cannot reach Unleash at %s: %w", c.base, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		if ctx.Err() == nil {
			return &transientError{fmt.Errorf("%s %s: reading the answer: %w", method, path, err)}
		}
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &statusError{Code: resp.StatusCode, Message: messageOf(body)}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return &transientError{se}
		}
		return se
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON Unleash sends (is %s an Unleash server?): %w", method, path, c.base, err)
	}
	return nil
}

// messageOf extracts Unleash's error message from an answer body: its JSON
// errors carry "message" and "details"; anything else (a proxy's HTML page)
// is cut to one short line.
func messageOf(body []byte) string {
	var e struct {
		Message string `json:"message"`
		Details []struct {
			Message string `json:"message"`
		} `json:"details"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		msg := e.Message
		// "Request validation failed ... Refer to the details list" says
		// nothing without the details.
		if len(e.Details) > 0 && e.Details[0].Message != "" && e.Details[0].Message != e.Message {
			msg += " (" + e.Details[0].Message + ")"
		}
		return msg
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// feature is the part of GET /api/admin/projects/{p}/features/{f} the
// action reads.
type feature struct {
	Environments []struct {
		Name    string `json:"name"`
		Enabled bool   `json:"enabled"`
	} `json:"environments"`
}

// legacyFeature is the part of GET /api/admin/features/{f} (Unleash 3 and
// 4) the action reads.
type legacyFeature struct {
	Enabled bool `json:"enabled"`
}

// errNoFlag is the error of reading a flag that does not exist.
var errNoFlag = errors.New("no such flag")

// noEnvError is the error of reading a flag that does not have the
// environment.
type noEnvError struct {
	have []string // the environments the flag has
}

func (e *noEnvError) Error() string { return "the flag has no such environment" }

// flagPath is where a flag lives in the environment-aware admin API.
func flagPath(project, flag string) string {
	return "/api/admin/projects/" + url.PathEscape(project) + "/features/" + url.PathEscape(flag)
}

// get reads whether flag is enabled in env of project, or, in legacy mode,
// at all.
func (c *client) get(ctx context.Context, legacy bool, project, flag, env string) (bool, error) {
	if legacy {
		var f legacyFeature
		err := c.call(ctx, http.MethodGet, "/api/admin/features/"+url.PathEscape(flag), &f)
		if statusOf(err) == http.StatusNotFound {
			return false, errNoFlag
		}
		return f.Enabled, err
	}
	var f feature
	err := c.call(ctx, http.MethodGet, flagPath(project, flag), &f)
	if statusOf(err) == http.StatusNotFound {
		return false, errNoFlag
	}
	if err != nil {
		return false, err
	}
	have := make([]string, 0, len(f.Environments))
	for _, e := range f.Environments {
		if e.Name == env {
			return e.Enabled, nil
		}
		have = append(have, e.Name)
	}
	return false, &noEnvError{have: have}
}

// set turns flag on or off in env of project, or, in legacy mode,
// everywhere. Both APIs answer 200 to a flag already in the state, so a
// retry after a lost answer is harmless.
func (c *client) set(ctx context.Context, legacy bool, project, flag, env string, on bool) error {
	path := flagPath(project, flag) + "/environments/" + url.PathEscape(env) + "/" + state(on)
	if legacy {
		path = "/api/admin/features/" + url.PathEscape(flag) + "/toggle/" + state(on)
	}
	return c.call(ctx, http.MethodPost, path, nil)
}
