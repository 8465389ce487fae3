package action

import (
	"fmt"
	"sort"
)

// Registry maps action names, and their aliases, to handlers. The zero value
// is an empty registry ready to use. A Registry is filled during start-up and
// only read afterwards, so lookups need no locking.
type Registry struct {
	handlers map[string]entry
}

type entry struct {
	canonical string
	handler   Handler
}

// Register makes h answer to name and to every alias. A name that is
// already taken is a wiring mistake and is returned as an error.
func (r *Registry) Register(name string, h Handler, aliases ...string) error {
	if name == "" {
		return fmt.Errorf("register action: empty name")
	}
	if h == nil {
		return fmt.Errorf("register action %q: nil handler", name)
	}
	if r.handlers == nil {
		r.handlers = make(map[string]entry)
	}
	for _, n := range append([]string{name}, aliases...) {
		if prev, taken := r.handlers[n]; taken {
			return fmt.Errorf("register action %q: name %q is already taken by %q", name, n, prev.canonical)
		}
	}
	for _, n := range append([]string{name}, aliases...) {
		r.handlers[n] = entry{canonical: name, handler: h}
	}
	return nil
}

// Lookup returns the handler for an action name or alias, and the canonical
// name it was registered under. ok is false for an action this provider does
// not handle, which must then be left alone: another provider may own it.
func (r *Registry) Lookup(name string) (h Handler, canonical string, ok bool) {
	e, ok := r.handlers[name]
	return e.handler, e.canonical, ok
}

// Names lists every name and alias the registry answers to, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.handlers))
	for n := range r.handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
