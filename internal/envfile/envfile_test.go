package envfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRead(t *testing.T) {
	// As bash's printf %q writes "*:*.abc" and a path with a space.
	env, err := Read(write(t, "# written by unleash.sh\nUNLEASH_URL=http://127.0.0.1:4242\n\nUNLEASH_ADMIN_TOKEN=\\*:\\*.abc\nDIR=/tmp/a\\ b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if env["UNLEASH_URL"] != "http://127.0.0.1:4242" || env["UNLEASH_ADMIN_TOKEN"] != "*:*.abc" || env["DIR"] != "/tmp/a b" || len(env) != 3 {
		t.Errorf("read %q", env)
	}
}

func TestReadRefuses(t *testing.T) {
	for text, want := range map[string]string{
		"NOEQUALS\n":            "line 1: not KEY=value",
		"TOKEN=$'s3cr3t\\n'\n":  "TOKEN is quoted in a way",
		"A=1\nTOKEN='s3cr3t'\n": "TOKEN is quoted in a way",
	} {
		_, err := Read(write(t, text))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%q: %v, want %q and no value", text, err, want)
		}
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file was read")
	}
}
