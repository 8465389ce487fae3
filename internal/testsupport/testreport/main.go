// Command testreport reads `go test -json` on stdin and prints what a
// developer needs: each failure with its output, one line for each skipped
// test with the reason it gave (which says which command runs it), and a
// line per package. It exits 1 if anything failed.
//
//	go test -json ./... | go run ./internal/testsupport/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() { os.Exit(report()) }

func report() int {
	failed := false
	outputs := map[string][]string{} // package + " " + test → output so far
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			fmt.Println(sc.Text()) // not an event: pass it on
			continue
		}
		key := ev.Package + " " + ev.Test
		switch ev.Action {
		case "output", "build-output":
			if ev.Action == "build-output" {
				fmt.Print(ev.Output)
				continue
			}
			outputs[key] = append(outputs[key], ev.Output)
		case "build-fail":
			failed = true
		case "skip":
			if ev.Test != "" {
				fmt.Printf("SKIP %s %s: %s\n", ev.Package, ev.Test, reason(outputs[key]))
			}
			delete(outputs, key)
		case "fail":
			failed = true
			if ev.Test == "" {
				fmt.Print(strings.Join(outputs[key], ""))
				fmt.Printf("FAIL\t%s\t%.3fs\n", ev.Package, ev.Elapsed)
			} else {
				fmt.Print(strings.Join(outputs[key], ""))
			}
			delete(outputs, key)
		case "pass":
			if ev.Test == "" {
				fmt.Printf("ok  \t%s\t%.3fs\n", ev.Package, ev.Elapsed)
			}
			delete(outputs, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		return 1
	}
	if failed {
		return 1
	}
	return 0
}

// reason is the last line a skipped test logged (its t.Skip message),
// without the file:line prefix.
func reason(out []string) string {
	for i := len(out) - 1; i >= 0; i-- {
		line := strings.TrimSpace(out[i])
		if line == "" || strings.HasPrefix(line, "--- SKIP") || strings.HasPrefix(line, "=== ") {
			continue
		}
		if _, msg, ok := strings.Cut(line, ": "); ok && strings.HasSuffix(strings.Fields(line)[0], ":") {
			return msg
		}
		return line
	}
	return "(no reason given)"
}
