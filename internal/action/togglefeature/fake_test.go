package togglefeature_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
)

// fakeUnleash is an httptest fake of the parts of Unleash's admin API the
// action uses: the environment-aware API of Unleash 5 and 6 and the legacy
// one of Unleash 3 and 4. It answers as Unleash does, errors included.
type fakeUnleash struct {
	URL string

	token   string
	project string

	mu    sync.Mutex
	flags map[string]map[string]bool // flag → environment → enabled; legacy flags use environment "*"
	calls []string                   // "GET /path", in order
	seen  map[string]int             // calls per "METHOD /path"

	// intercept, when set, sees every authorised request first, with how
	// many times the same method and path were called before. A status
	// other than 0 is answered with body instead of what the fake would.
	intercept func(f *fakeUnleash, r *http.Request, n int) (status int, body string)
}

const fakeToken = "*:*.fake0123456789abcdef"

// newFake serves flags, a map of flag → environment → enabled, in project
// "default".
func newFake(t *testing.T, flags map[string]map[string]bool) *fakeUnleash {
	t.Helper()
	f := &fakeUnleash{token: fakeToken, project: "default", flags: map[string]map[string]bool{}, seen: map[string]int{}}
	for name, envs := range flags {
		f.flags[name] = map[string]bool{}
		for env, on := range envs {
			f.flags[name][env] = on
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/admin/projects/{project}/features/{feature}", f.getFeature)
	mux.HandleFunc("POST /api/admin/projects/{project}/features/{feature}/environments/{env}/{state}", f.setFeature)
	mux.HandleFunc("GET /api/admin/features/{feature}", f.getLegacy)
	mux.HandleFunc("POST /api/admin/features/{feature}/toggle/{state}", f.setLegacy)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.EscapedPath()
		f.mu.Lock()
		f.calls = append(f.calls, key)
		n := f.seen[key]
		f.seen[key]++
		f.mu.Unlock()
		if r.Header.Get("Authorization") != f.token {
			unleashError(w, http.StatusUnauthorized, "UnauthorizedError", "You must log in to use Unleash.")
			return
		}
		if f.intercept != nil {
			if status, body := f.intercept(f, r, n); status != 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
				return
			}
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func unleashError(w http.ResponseWriter, status int, name, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "00000000-0000-0000-0000-000000000000", "name": name, "message": msg,
		"details": []map[string]string{{"message": msg}},
	})
}

func (f *fakeUnleash) getFeature(w http.ResponseWriter, r *http.Request) {
	project, name := r.PathValue("project"), r.PathValue("feature")
	f.mu.Lock()
	envs, ok := f.flags[name]
	type env struct {
		Name     string `json:"name"`
		Enabled  bool   `json:"enabled"`
		Type     string `json:"type"`
		Strategy []any  `json:"strategies"`
	}
	var list []env
	for n, on := range envs {
		list = append(list, env{Name: n, Enabled: on, Type: "production", Strategy: []any{}})
	}
	f.mu.Unlock()
	if !ok || project != f.project {
		unleashError(w, http.StatusNotFound, "NotFoundError", fmt.Sprintf("There's no feature named %q in project %q.", name, project))
		return
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	_ = json.NewEncoder(w).Encode(map[string]any{"name": name, "project": project, "type": "release", "environments": list})
}

func (f *fakeUnleash) setFeature(w http.ResponseWriter, r *http.Request) {
	project, name, env := r.PathValue("project"), r.PathValue("feature"), r.PathValue("env")
	on, ok := map[string]bool{"on": true, "off": false}[r.PathValue("state")]
	if !ok {
		unleashError(w, http.StatusNotFound, "NotFoundError", "The path you were looking for is not available.")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	envs, exists := f.flags[name]
	if !exists || project != f.project {
		unleashError(w, http.StatusNotFound, "NotFoundError", fmt.Sprintf("There's no feature named %q in project %q.", name, project))
		return
	}
	if _, has := envs[env]; !has {
		unleashError(w, http.StatusNotFound, "NotFoundError", fmt.Sprintf("Could not find environment %s for feature: %s", env, name))
		return
	}
	envs[env] = on
	w.WriteHeader(http.StatusOK)
}

func (f *fakeUnleash) getLegacy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("feature")
	f.mu.Lock()
	envs, ok := f.flags[name]
	on := envs["*"]
	f.mu.Unlock()
	if !ok {
		unleashError(w, http.StatusNotFound, "NotFoundError", "Could not find feature")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"name": name, "enabled": on, "strategies": []any{}})
}

func (f *fakeUnleash) setLegacy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("feature")
	on, ok := map[string]bool{"on": true, "off": false}[r.PathValue("state")]
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, exists := f.flags[name]; !exists || !ok {
		unleashError(w, http.StatusNotFound, "NotFoundError", "Could not find feature")
		return
	}
	f.flags[name]["*"] = on
	_ = json.NewEncoder(w).Encode(map[string]any{"name": name, "enabled": on})
}

// state returns flag → environment → enabled, as the fake has it now.
func (f *fakeUnleash) state() map[string]map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]map[string]bool{}
	for name, envs := range f.flags {
		out[name] = map[string]bool{}
		for env, on := range envs {
			out[name][env] = on
		}
	}
	return out
}

// set changes a flag behind the action's back, as another Unleash user would.
func (f *fakeUnleash) set(flag, env string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flags[flag][env] = on
}

// writes returns the POSTs received, in order.
func (f *fakeUnleash) writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if c[:4] == "POST" {
			out = append(out, c)
		}
	}
	return out
}
