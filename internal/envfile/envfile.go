// Package envfile reads the KEY=value files that the test servers' scripts
// (test/controlplane, test/unleash) write for the tests that use them.
package envfile

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Read parses path. Values are unquoted, or quoted by bash's printf %q
// when they hold characters such as the "*" of a token, which leaves
// backslash escapes; $'...' quoting is refused. Errors never show a value,
// which may be a secret.
func Read(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s, line %d: not KEY=value", path, n)
		}
		if strings.HasPrefix(v, "$'") || strings.HasPrefix(v, "'") {
			return nil, fmt.Errorf("%s: %s is quoted in a way this reader does not read", path, k)
		}
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
			}
			b.WriteByte(v[i])
		}
		env[k] = b.String()
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return env, nil
}
