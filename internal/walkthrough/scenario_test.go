package walkthrough

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/reproducible-choria/deployment/topology"
)

func TestDefaultScenarioCoversEveryItem(t *testing.T) {
	s, err := Default()
	require.NoError(t, err)
	items := s.Items()
	for i := 1; i <= 11; i++ {
		assert.Contains(t, items, i, "issue item %d has no step", i)
	}
	for _, st := range s.Steps {
		assert.NotEmpty(t, st.Items, "step %s names no item", st.Name)
	}
}

// Every variable the scenario uses is one the runner provides or an
// earlier step captures, so no step fails on a misspelt name.
func TestDefaultScenarioVariablesAreDefined(t *testing.T) {
	s, err := Default()
	require.NoError(t, err)
	topo, err := topology.Default()
	require.NoError(t, err)
	known := TopologyVars(topo)
	for _, k := range []string{"servers.count", "servers.names", "servers.fqdns", "servers.first", "servers.first.fqdn", "provisioning.token", "issuer.public_key"} {
		known[k] = "x"
	}
	for _, u := range topo.UserNames() {
		known["password."+u] = "x"
	}
	servers := []Server{{"server1", "server1.choria.local"}, {"server2", "server2.choria.local"}}
	for _, st := range s.Steps {
		for _, inst := range instances(st, servers) {
			vars := known.with(inst.vars...)
			for _, text := range stepTexts(inst.step) {
				_, err := vars.Expand(text)
				assert.NoError(t, err, "step %s: %q", inst.name, text)
			}
			for name := range st.Capture {
				n, err := vars.Expand(name)
				require.NoError(t, err)
				known[n] = "x"
			}
		}
	}
}

func stepTexts(st Step) []string {
	texts := []string{st.Host, st.Command}
	if st.Login != nil {
		texts = append(texts, st.Login.User, st.Login.Password)
	}
	texts = append(texts, st.Expect.Contains...)
	texts = append(texts, st.Expect.NotContains...)
	texts = append(texts, st.patterns()...)
	for _, c := range st.Expect.Count {
		texts = append(texts, c.Equals, c.Min)
	}
	for k, v := range st.Verify {
		texts = append(texts, k, v)
	}
	return texts
}

// The scenario is read by Python too: its patterns must mean the same in
// Python's re, so the features only one of the two has are kept out.
func TestDefaultScenarioPatternsArePortable(t *testing.T) {
	s, err := Default()
	require.NoError(t, err)
	unportable := regexp.MustCompile(`\(\?[P<=!]|\\[pPzAQE]|\[\[:|\\[1-9]`)
	for _, st := range s.Steps {
		for _, p := range st.patterns() {
			assert.False(t, unportable.MatchString(p), "step %s: pattern %q uses a feature Go and Python differ on", st.Name, p)
		}
		assert.NotContains(t, st.Command, "$${", "step %s", st.Name)
	}
}

func TestParseRejects(t *testing.T) {
	for name, tc := range map[string]struct{ json, want string }{
		"unknown field":         {`{"steps":[{"name":"a","host":"client","command":"true","expect":{"contain":["x"]}}]}`, `unknown field "contain"`},
		"no steps":              {`{"steps":[]}`, "no steps"},
		"command and login":     {`{"steps":[{"name":"a","host":"client","command":"true","login":{"user":"u","password":"p","expect":"success"}}]}`, "exactly one of command and login"},
		"neither":               {`{"steps":[{"name":"a","host":"client"}]}`, "exactly one of command and login"},
		"duplicate name":        {`{"steps":[{"name":"a","host":"h","command":"x"},{"name":"a","host":"h","command":"y"}]}`, "name used twice"},
		"bad login outcome":     {`{"steps":[{"name":"a","host":"h","login":{"user":"u","password":"p","expect":"maybe"}}]}`, `login expect must be`},
		"bad exit":              {`{"steps":[{"name":"a","host":"h","command":"x","expect":{"exit":"sometimes"}}]}`, `exit must be a number`},
		"bad regex":             {`{"steps":[{"name":"a","host":"h","command":"x","expect":{"regex":["(${x}"]}}]}`, "missing closing )"},
		"capture without group": {`{"steps":[{"name":"a","host":"h","command":"x","capture":{"v":"\\d+"}}]}`, "has no group"},
		"count without bound":   {`{"steps":[{"name":"a","host":"h","command":"x","expect":{"count":[{"regex":"x"}]}}]}`, "exactly one of equals and min"},
		"unknown verify":        {`{"steps":[{"name":"a","host":"h","command":"x","verify":{"kind":"magic"}}]}`, `verify kind "magic"`},
		"verify lacks param":    {`{"steps":[{"name":"a","host":"h","command":"x","verify":{"kind":"go-package","package":"p"}}]}`, "needs require"},
		"item without each":     {`{"steps":[{"name":"a","host":"${item}","command":"x"}]}`, "without each"},
		"bad each":              {`{"steps":[{"name":"a","host":"h","command":"x","each":"hosts"}]}`, `each must be`},
		"bad duration":          {`{"steps":[{"name":"a","host":"h","command":"x","deadline":"soon"}]}`, `duration "soon"`},
		"negative timeout":      {`{"steps":[{"name":"a","host":"h","command":"x","timeout":"-1s"}]}`, `timeout "-1s" is negative`},
		"interval alone":        {`{"steps":[{"name":"a","host":"h","command":"x","interval":"1s"}]}`, "interval without deadline"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestExitJSON(t *testing.T) {
	for _, tc := range []struct {
		json   string
		exit   Exit
		ok, no []int
	}{
		{`0`, Exit{}, []int{0}, []int{1, 124}},
		{`3`, Exit{Code: 3}, []int{3}, []int{0, 1}},
		{`"nonzero"`, Exit{NonZero: true}, []int{1, 124}, []int{0}},
		{`"any"`, Exit{Any: true}, []int{0, 1, 255}, nil},
	} {
		var e Exit
		require.NoError(t, json.Unmarshal([]byte(tc.json), &e))
		assert.Equal(t, tc.exit, e)
		for _, s := range tc.ok {
			assert.True(t, e.Matches(s), "%s matches %d", tc.json, s)
		}
		for _, s := range tc.no {
			assert.False(t, e.Matches(s), "%s does not match %d", tc.json, s)
		}
		b, err := json.Marshal(e)
		require.NoError(t, err)
		assert.JSONEq(t, tc.json, string(b))
	}
}

func TestExpandInnermostFirst(t *testing.T) {
	v := Vars{"item": "server2", "seed_server2": "abc", "servers.count": "3"}
	got, err := v.Expand("${seed_${item}} of ${servers.count}")
	require.NoError(t, err)
	assert.Equal(t, "abc of 3", got)

	_, err = v.Expand("${nope} and ${seed_${missing}}")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown variable nope, missing")

	got, err = v.Expand("$HOME and $1 and $(date)")
	require.NoError(t, err)
	assert.Equal(t, "$HOME and $1 and $(date)", got, "shell parameters without braces are left alone")
}

func TestExpectCheck(t *testing.T) {
	vars := Vars{"servers.count": "2", "domain": "choria.local", "fact": "7959"}
	out := "server1.choria.local   time=4 ms\nserver2.choria.local   time=5 ms\n\n2 replies max: 5ms\n  7959 found 2 times\n"
	ok := Expect{
		Contains:    []string{"${servers.count} replies"},
		NotContains: []string{"No Responses"},
		Regex:       []string{`^\s+${fact} found ${servers.count} times$`},
		NotRegex:    []string{`^error`},
		Count: []Count{
			{Regex: `^\S+\.${domain}\s+time=\d+ ms`, Equals: "${servers.count}"},
			{Regex: `time=`, Min: "1"},
		},
	}
	failed, err := ok.Check(Result{Output: out}, vars, false)
	require.NoError(t, err)
	assert.Empty(t, failed)

	failed, err = ok.Check(Result{Output: out, Exit: 1}, vars, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"exit status 0, got 1"}, failed)

	failed, err = ok.Check(Result{Output: out, Exit: 1}, vars, true)
	require.NoError(t, err)
	assert.Empty(t, failed, "a login's outcome is not an exit status")

	bad := Expect{
		Contains:    []string{"3 replies"},
		NotContains: []string{"time="},
		Regex:       []string{`^nothing$`},
		NotRegex:    []string{`max: \d+ms`},
		Count:       []Count{{Regex: `time=`, Equals: "3"}, {Regex: `time=`, Min: "${servers.count}0"}},
	}
	failed, err = bad.Check(Result{Output: out}, vars, false)
	require.NoError(t, err)
	assert.Equal(t, []string{
		`output contains "3 replies"`,
		`output does not contain "time="`,
		`output matches /^nothing$/`,
		`output does not match /max: \d+ms/ (it has "max: 5ms")`,
		`3 matches of /time=/, got 2`,
		`at least 20 matches of /time=/, got 2`,
	}, failed)

	_, err = Expect{Contains: []string{"${unset}"}}.Check(Result{}, vars, false)
	assert.ErrorContains(t, err, "unknown variable unset")
	_, err = Expect{Count: []Count{{Regex: "x", Equals: "${domain}"}}}.Check(Result{}, vars, false)
	assert.ErrorContains(t, err, `count "choria.local" is not a number`)
}

func TestCaptures(t *testing.T) {
	vars := Vars{"item": "server3"}
	got, failed, err := Captures(map[string]string{
		"seed_${item}": `^([0-9a-f]{4})\s+\S*server\.seed$`,
		"jwt_${item}":  `^([0-9a-f]{4})\s+\S*server\.jwt$`,
	}, "abcd  /etc/choria/server.seed\n0123  /etc/choria/server.jwt\n", vars)
	require.NoError(t, err)
	assert.Empty(t, failed)
	assert.Equal(t, Vars{"seed_server3": "abcd", "jwt_server3": "0123"}, got)

	_, failed, err = Captures(map[string]string{"id": `id=(\d+)`}, "no id here", vars)
	require.NoError(t, err)
	assert.Equal(t, []string{"output matches /id=(\\d+)/ to capture id"}, failed)
}

func TestDefaultScenarioExpectationsOnReferenceOutput(t *testing.T) {
	// outputs copied from the reference README and from the lab
	s, err := Default()
	require.NoError(t, err)
	step := func(name string) Step {
		for _, st := range s.Steps {
			if st.Name == name {
				return st
			}
		}
		t.Fatalf("no step %s", name)
		return Step{}
	}
	vars := Vars{"servers.count": "10", "domain": "choria.local", "servers.first.fqdn": "eb9614dded4c.choria.local"}

	scout := "Triggered 10 checks on 10 nodes\n" + `╭─────────────────────────────────────────────╮
│            Scout status history             │
├──────────────┬───────┬────────────┬─────────┤
│ Name         │ State │ Last Check │ History │
├──────────────┼───────┼────────────┼─────────┤
│ check_choria │ OK    │ 13s        │ OK      │
╰──────────────┴───────┴────────────┴─────────╯
`
	failed, err := step("scout-check-ok").Expect.Check(Result{Output: scout}, vars, false)
	require.NoError(t, err)
	assert.Empty(t, failed)
	unknown := strings.Replace(scout, "│ check_choria │ OK    │ 13s        │ OK      │", "│ check_choria │ UNKNOWN │ 2562047h47m16.854775807s │         │", 1)
	failed, err = step("scout-check-ok").Expect.Check(Result{Output: unknown}, vars, false)
	require.NoError(t, err)
	assert.NotEmpty(t, failed, "UNKNOWN is not OK")

	jwt := "          Caller ID: up=admin\n         Expires At: 2022-12-13 12:54:59 +0000 UTC (53m59s)\n"
	re, err := expandCompile(step("jwt-admin").Expect.Regex[0], vars)
	require.NoError(t, err)
	assert.True(t, re.MatchString(jwt))
	for _, later := range []string{"(1h0m0s)", "(2h59m3s)", "(23h1m0s)"} {
		assert.False(t, re.MatchString(strings.Replace(jwt, "(53m59s)", later, 1)), "an expiry %s is beyond the 1h login validity", later)
	}
	assert.True(t, re.MatchString(strings.Replace(jwt, "(53m59s)", "(59.5s)", 1)))

	facts := "Report for fact: memory.size\n\n  7959 found 10 times\n\nFinished processing 10 / 10 hosts in 418ms\n"
	got, failed, err := Captures(step("facts-memory-size").Capture, facts, vars)
	require.NoError(t, err)
	assert.Empty(t, failed)
	assert.Equal(t, "7959", got["memory_size"])
	_, failed, err = Captures(step("facts-memory-size").Capture, strings.Replace(facts, "found 10 times", "found 9 times", 1), vars)
	require.NoError(t, err)
	assert.NotEmpty(t, failed, "a fact value found on fewer servers than there are is not captured")

	var lines []string
	for i := 1; i <= 10; i++ {
		lines = append(lines, fmt.Sprintf("registration from server%d.choria.local: adapter output carrying inventory content", i))
	}
	failed, err = step("registration-from-every-server").Expect.Check(Result{Output: strings.Join(lines, "\n")}, vars, false)
	require.NoError(t, err)
	assert.Empty(t, failed)
	lines[4] = "no registration from server5.choria.local: nats: message not found"
	failed, err = step("registration-from-every-server").Expect.Check(Result{Output: strings.Join(lines, "\n")}, vars, false)
	require.NoError(t, err)
	assert.NotEmpty(t, failed)
}
