package requests

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
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

func nobody(t *testing.T) (uint32, uint32) {
	t.Helper()

	u, err := user.Lookup("nobody")
	if err != nil {
		return 65534, 65534
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	require.NoError(t, err)
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	require.NoError(t, err)

	return uint32(uid), uint32(gid)
}

// runTestAsNobody re-runs one test of this test binary as the nobody user.
// CI runs as root, which can write anywhere, so "unwritable" needs a real
// unprivileged process. The binary is copied where nobody can execute it.
func runTestAsNobody(t *testing.T, test string, env ...string) string {
	t.Helper()

	dir, err := os.MkdirTemp("", "requests-nobody-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))

	self, err := os.Open(os.Args[0])
	require.NoError(t, err)
	defer self.Close()
	bin := filepath.Join(dir, "requests.test")
	f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(f, self)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	uid, gid := nobody(t)
	cmd := exec.Command(bin, "-test.run=^"+test+"$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "helper test failed:\n%s", out)

	return string(out)
}
