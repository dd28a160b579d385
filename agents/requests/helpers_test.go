package requests

import (
	"encoding/json"
	"testing"

	"github.com/choria-io/go-external/agent"
	"github.com/stretchr/testify/require"

	ddlagent "github.com/choria-io/go-choria/providers/agent/mcorpc/ddl/agent"
)

// call runs one action handler the way go-external does and returns the
// reply after a JSON round trip, so tests see what the server would see.
func call(t *testing.T, a *Agent, action string, input map[string]any, settings map[string]string) (*agent.Reply, map[string]any) {
	t.Helper()

	data, err := json.Marshal(input)
	require.NoError(t, err)

	var handler agent.ActionHandler
	for _, act := range a.Actions() {
		if act.Name == action {
			handler = act.Handler
		}
	}
	require.NotNil(t, handler, "no action %s", action)

	rep := &agent.Reply{}
	handler(&agent.Request{Agent: Name, Action: action, Data: data}, rep, settings)

	j, err := json.Marshal(rep)
	require.NoError(t, err)
	res := &agent.Reply{}
	require.NoError(t, json.Unmarshal(j, res))
	out, _ := res.Data.(map[string]any)

	return res, out
}

// requireDDLValid checks that the server-side DDL validation would accept an
// input we exercise, so successful tests use inputs real clients can send.
func requireDDLValid(t *testing.T, action string, input map[string]any) {
	t.Helper()

	ddl, err := ddlagent.NewFromBytes(DDL())
	require.NoError(t, err)
	act, err := ddl.ActionInterface(action)
	require.NoError(t, err)

	j, err := json.Marshal(input)
	require.NoError(t, err)
	_, err = act.ValidateRequestJSON(j)
	require.NoError(t, err, "input %s rejected by the DDL", j)
}

func requireOK(t *testing.T, rep *agent.Reply) {
	t.Helper()
	require.Equal(t, agent.OK, rep.StatusCode, "reply failed: %s", rep.StatusMessage)
}

func requireFailed(t *testing.T, rep *agent.Reply, code agent.StatusCode, msg string) {
	t.Helper()
	require.Equal(t, code, rep.StatusCode, "status message: %s", rep.StatusMessage)
	require.Contains(t, rep.StatusMessage, msg)
}

// openPolicy opens the agent's policy wide, for tests of what it does once
// allowed: any host, files anywhere.
func openPolicy(c Config) Config {
	c.AllowedHosts = []string{"*"}
	c.BodyFileDirectories = []string{"/"}
	c.DownloadDirectories = []string{"/"}
	return c
}
