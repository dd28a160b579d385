package walkthrough

import (
	"testing"

	scenario "github.com/reproducible-choria/deployment/walkthrough"
)

// FuzzParse: no scenario file reaches a panic, and one that loads can be
// expanded and checked against any output without one either.
func FuzzParse(f *testing.F) {
	f.Add(scenario.JSON())
	f.Add([]byte(`{"steps": [{"name": "a", "host": "client", "command": "true", "expect": {"regex": ["("]}}]}`))
	f.Add([]byte(`{"steps": [{"name": "a", "host": "${x", "login": {"user": "u", "password": "p", "expect": "success"}}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		vars := Vars{"item": "server1"}
		for _, st := range s.Steps {
			_, _ = vars.Expand(st.Command)
			_, _ = st.Expect.Check(Result{Output: "output\nline 2\n", Exit: 1}, vars, st.Login != nil)
			_, _, _ = Captures(st.Capture, "output\n", vars)
		}
	})
}
