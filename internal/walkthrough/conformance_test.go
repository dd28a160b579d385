package walkthrough

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/internal/duration"
	"github.com/reproducible-choria/deployment/internal/testenv"
)

// conformance is walkthrough/conformance.json: cases every interpreter of
// the scenario format must agree on.
type conformance struct {
	Description string            `json:"description"`
	Cases       []conformanceCase `json:"cases"`
	Durations   [][2]any          `json:"durations"`
}

type conformanceCase struct {
	Name        string            `json:"name"`
	Note        string            `json:"note"`
	Variables   Vars              `json:"variables"`
	Text        *string           `json:"text"`
	Expanded    *string           `json:"expanded"`
	Redact      *string           `json:"redact"`
	Redacted    string            `json:"redacted"`
	ExpandError *string           `json:"expand_error"`
	Status      int               `json:"status"`
	Output      *string           `json:"output"`
	Login       bool              `json:"login"`
	Expect      Expect            `json:"expect"`
	Capture     map[string]string `json:"capture"`
	Failures    []string          `json:"failures"`
	Captured    map[string]string `json:"captured"`
	Error       string            `json:"error"`
}

func loadConformance(t *testing.T) (*conformance, string) {
	t.Helper()
	path := filepath.Join(testenv.ModuleRoot(t), "walkthrough", "conformance.json")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var c conformance
	require.NoError(t, json.Unmarshal(b, &c))
	require.NotEmpty(t, c.Cases)
	return &c, path
}

// TestConformance runs every conformance case through the Go runner's
// functions, then the whole file through the VM test's Python interpreter
// (nix/tests/scenario.py), which must agree to the letter.
func TestConformance(t *testing.T) {
	c, path := loadConformance(t)
	for _, cc := range c.Cases {
		t.Run(cc.Name, func(t *testing.T) {
			if cc.Text != nil {
				got, err := cc.Variables.Expand(*cc.Text)
				if cc.ExpandError != nil {
					require.Error(t, err)
					assert.Equal(t, *cc.ExpandError, err.Error())
				} else {
					require.NoError(t, err)
					assert.Equal(t, *cc.Expanded, got)
				}
			}
			if cc.Redact != nil {
				assert.Equal(t, cc.Redacted, cc.Variables.redactor().r.Replace(*cc.Redact))
			}
			if cc.Output == nil {
				return
			}
			failed, err := cc.Expect.Check(Result{Output: *cc.Output, Exit: cc.Status}, cc.Variables, cc.Login)
			var captured Vars
			if err == nil {
				var cfailed []string
				captured, cfailed, err = Captures(cc.Capture, *cc.Output, cc.Variables)
				failed = append(failed, cfailed...)
			}
			if cc.Error != "" {
				require.Error(t, err)
				assert.Equal(t, cc.Error, err.Error())
				return
			}
			require.NoError(t, err)
			slices.Sort(failed)
			assert.Equal(t, cc.Failures, nonNil(failed))
			if cc.Captured != nil {
				assert.Equal(t, cc.Captured, map[string]string(captured))
			}
		})
	}
	t.Run("durations", func(t *testing.T) {
		for _, d := range c.Durations {
			var got duration.Duration
			err := json.Unmarshal([]byte(`"`+d[0].(string)+`"`), &got)
			if d[1] == nil {
				assert.Error(t, err, "%v is not a duration", d[0])
				continue
			}
			require.NoError(t, err, d[0])
			assert.InDelta(t, d[1].(float64), got.Seconds(), 1e-9, d[0])
		}
	})
	t.Run("the VM test's interpreter agrees", func(t *testing.T) {
		python := testenv.RequireTool(t, "python3")
		root := testenv.ModuleRoot(t)
		out, err := exec.Command(python, filepath.Join(root, "nix", "tests", "conformance.py"), path).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "conformance: "+strconv.Itoa(len(c.Cases)+1)+" passed, 0 failed")
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
