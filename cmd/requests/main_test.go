package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/stretchr/testify/require"
)

// invoke runs the binary as the Choria server's external agent provider
// does: request and reply files passed in the environment, nothing else.
func invoke(t *testing.T, bin string, protocol string, request any, config string) (map[string]any, string) {
	t.Helper()

	dir := t.TempDir()
	reqFile := filepath.Join(dir, "request")
	repFile := filepath.Join(dir, "reply")
	cfgFile := filepath.Join(dir, "plugin.d", "requests")

	j, err := json.Marshal(request)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(reqFile, j, 0o600))
	require.NoError(t, os.WriteFile(repFile, nil, 0o600))
	if config != "" {
		require.NoError(t, os.MkdirAll(filepath.Dir(cfgFile), 0o700))
		require.NoError(t, os.WriteFile(cfgFile, []byte(config), 0o600))
	}

	cmd := exec.Command(bin, reqFile, repFile, protocol)
	cmd.Dir = dir
	cmd.Env = []string{
		"CHORIA_EXTERNAL_REQUEST=" + reqFile,
		"CHORIA_EXTERNAL_REPLY=" + repFile,
		"CHORIA_EXTERNAL_PROTOCOL=" + protocol,
		"CHORIA_EXTERNAL_CONFIG=" + cfgFile,
		"PATH=" + os.Getenv("PATH"),
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "agent failed: %s", out)

	rep, err := os.ReadFile(repFile)
	require.NoError(t, err)
	res := map[string]any{}
	require.NoError(t, json.Unmarshal(rep, &res), "reply: %s", rep)

	return res, string(out)
}

func rpcRequest(action string, data map[string]any) map[string]any {
	return map[string]any{
		"$schema":  "https://choria.io/schemas/mcorpc/external/v1/rpc_request.json",
		"protocol": "io.choria.mcorpc.external.v1.rpc_request",
		"agent":    "requests",
		"action":   action,
		"data":     data,
	}
}

func TestBinaryProtocol(t *testing.T) {
	bin := testenv.BuildCommand(t, "./cmd/requests")

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer srv.Close()

	t.Run("activation", func(t *testing.T) {
		rep, _ := invoke(t, bin, "io.choria.mcorpc.external.v1.activation_request", map[string]any{
			"$schema":  "https://choria.io/schemas/mcorpc/external/v1/activation_request.json",
			"protocol": "io.choria.mcorpc.external.v1.activation_request",
			"agent":    "requests",
		}, "")
		require.Equal(t, true, rep["activate"])
	})

	// the policy as a node's plugin.d/requests gives it, read by go-external
	allowLocal := "allowed_hosts = 127.0.0.1\n"

	t.Run("closed by default", func(t *testing.T) {
		rep, _ := invoke(t, bin, "io.choria.mcorpc.external.v1.rpc_request", rpcRequest("request", map[string]any{"url": srv.URL}), "")
		require.EqualValues(t, 4, rep["statuscode"], "invalid data: %v", rep)
		require.Contains(t, rep["statusmsg"], "is not allowed by the agent's policy")
		target := filepath.Join(t.TempDir(), "hello.txt")
		rep, _ = invoke(t, bin, "io.choria.mcorpc.external.v1.rpc_request", rpcRequest("download", map[string]any{"url": srv.URL, "target": target}), allowLocal)
		require.EqualValues(t, 4, rep["statuscode"], "invalid data: %v", rep)
		require.Contains(t, rep["statusmsg"], "outside the directories the agent's policy allows")
		require.NoFileExists(t, target)
	})

	t.Run("request", func(t *testing.T) {
		rep, _ := invoke(t, bin, "io.choria.mcorpc.external.v1.rpc_request", rpcRequest("request", map[string]any{"url": srv.URL}), allowLocal)
		require.EqualValues(t, 0, rep["statuscode"], "reply: %v", rep)
		data := rep["data"].(map[string]any)
		require.Equal(t, "hello", data["body"])
		require.EqualValues(t, 200, data["statuscode"])
	})

	t.Run("download", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "hello.txt")
		rep, _ := invoke(t, bin, "io.choria.mcorpc.external.v1.rpc_request", rpcRequest("download", map[string]any{"url": srv.URL, "target": target}), allowLocal+"download_directories = "+dir+"\n")
		require.EqualValues(t, 0, rep["statuscode"], "reply: %v", rep)
		dat, err := os.ReadFile(target)
		require.NoError(t, err)
		require.Equal(t, "hello", string(dat))
	})

	t.Run("config file timeout", func(t *testing.T) {
		rep, _ := invoke(t, bin, "io.choria.mcorpc.external.v1.rpc_request", rpcRequest("request", map[string]any{"url": srv.URL + "/slow"}), "timeout = 200ms\n"+allowLocal)
		require.EqualValues(t, 1, rep["statuscode"])
		require.Contains(t, rep["statusmsg"], "timed out after 200ms")
	})

	t.Run("unknown action", func(t *testing.T) {
		rep, _ := invoke(t, bin, "io.choria.mcorpc.external.v1.rpc_request", rpcRequest("teapot", map[string]any{}), "")
		require.EqualValues(t, 1, rep["statuscode"])
		require.Contains(t, rep["statusmsg"], "unknown action teapot")
	})
}
