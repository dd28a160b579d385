package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kballard/go-shellquote"
	"github.com/reproducible-choria/deployment/internal/testenv"
)

const (
	testConfig  = "../../internal/provhelper/testdata/config.json"
	testRequest = "../../internal/provhelper/testdata/provisioning-request.json"
)

type result struct {
	code           int
	stdout, stderr string
}

// runLikeProvisioner runs helperCmd the way choria-io/provisioner v0.16.0
// does (host/helper.go): shell-style split, stdin written from a goroutine,
// stdout read to EOF, 10 s timeout, stderr discarded by the provisioner but
// kept here for the assertions.
func runLikeProvisioner(t *testing.T, helperCmd string, stdin []byte) result {
	t.Helper()
	parts, err := shellquote.Split(helperCmd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cmd := exec.CommandContext(ctx, parts[0], parts[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return result{0, stdout.String(), stderr.String()}
	case errors.As(err, &exitErr):
		return result{exitErr.ExitCode(), stdout.String(), stderr.String()}
	default:
		t.Fatalf("running %s: %v", helperCmd, err)
		return result{}
	}
}

type reply struct {
	Defer         bool              `json:"defer"`
	Msg           string            `json:"msg"`
	Configuration map[string]string `json:"configuration"`
	ServerClaims  *struct {
		Exp         int64           `json:"exp"`
		Permissions map[string]bool `json:"permissions"`
	} `json:"server_claims"`
}

func decodeReply(t *testing.T, r result) reply {
	t.Helper()
	var rep reply
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not one reply JSON object: %v\nstdout: %q\nstderr: %q", err, r.stdout, r.stderr)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("more than one JSON value on stdout: %q", r.stdout)
	}
	return rep
}

func TestBinary(t *testing.T) {
	bin := testenv.BuildCommand(t, "./cmd/choria-provision-helper")
	request, err := os.ReadFile(testRequest)
	if err != nil {
		t.Fatal(err)
	}

	// A config path with a space, quoted as in provisioner.yaml's helper.
	cfgDir := filepath.Join(t.TempDir(), "helper config")
	if err := os.Mkdir(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgData, err := os.ReadFile(testConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(cfgDir, "helper.json")
	if err := os.WriteFile(cfgPath, cfgData, 0o600); err != nil {
		t.Fatal(err)
	}
	helperCmd := shellquote.Join(bin, "--config", cfgPath)

	t.Run("real request", func(t *testing.T) {
		before := time.Now()
		r := runLikeProvisioner(t, helperCmd, request)
		if r.code != 0 {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		rep := decodeReply(t, r)
		if rep.Defer {
			t.Fatalf("deferred: %s", rep.Msg)
		}
		if rep.Configuration["identity"] != "s16.choria.local" || rep.Configuration["plugin.security.choria.seed_file"] != "/etc/choria/server.seed" {
			t.Errorf("configuration = %v", rep.Configuration)
		}
		if rep.ServerClaims == nil || rep.ServerClaims.Exp < before.Add(43800*time.Hour).Unix() {
			t.Errorf("server_claims = %+v, want exp about 43800h from now", rep.ServerClaims)
		}
		if strings.Contains(r.stdout+r.stderr, "s3cret") {
			t.Error("output contains the provisioning token")
		}
	})

	bad := []struct{ name, input, msg string }{
		{"empty", "", "empty input"},
		{"malformed", `{"identity":`, "truncated JSON"},
		{"garbage", "\x00\x01\x02", "malformed JSON"},
		{"missing pubkey", `{"identity":"s16.choria.local"}`, "ed25519_pubkey missing"},
		{"injection", `{"identity":"a\nidentity=b","ed25519_pubkey":{"public_key":"` + strings.Repeat("ab", 32) + `","directory":"/etc/choria"}}`, "not a valid host name"},
		{"oversized", `{"identity":"` + strings.Repeat("a", 2<<20) + `"}`, "larger than"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := runLikeProvisioner(t, helperCmd, []byte(tc.input))
			if r.code != 0 {
				t.Fatalf("exit %d, want 0 with a defer reply; stderr %q", r.code, r.stderr)
			}
			rep := decodeReply(t, r)
			if !rep.Defer || !strings.Contains(rep.Msg, tc.msg) {
				t.Errorf("reply %+v, want defer with %q", rep, tc.msg)
			}
		})
	}

	operatorErrors := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no config flag", nil, 2, "--config"},
		{"missing config file", []string{"--config", filepath.Join(cfgDir, "nope.json")}, 1, filepath.Join(cfgDir, "nope.json")},
		{"invalid config file", []string{"--config", testRequest}, 1, testRequest},
		{"unknown flag", []string{"--config", cfgPath, "--verbose"}, 2, "verbose"},
	}
	for _, tc := range operatorErrors {
		t.Run(tc.name, func(t *testing.T) {
			r := runLikeProvisioner(t, shellquote.Join(append([]string{bin}, tc.args...)...), request)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr %q does not mention %q", r.stderr, tc.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}

	t.Run("check", func(t *testing.T) {
		r := runLikeProvisioner(t, helperCmd+" --check", nil)
		if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "is valid") {
			t.Errorf("--check: %+v", r)
		}
		r = runLikeProvisioner(t, shellquote.Join(bin, "--config", testRequest, "--check"), nil)
		if r.code != 1 || !strings.Contains(r.stderr, testRequest) {
			t.Errorf("--check on a bad config: %+v", r)
		}
	})
}

func TestRunInProcess(t *testing.T) {
	request, err := os.ReadFile(testRequest)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--config", testConfig}, bytes.NewReader(request), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep reply
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || rep.Defer {
		t.Fatalf("reply %q: %v", stdout.String(), err)
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("boom") }

type panicWriter struct{ bytes.Buffer }

func (w *panicWriter) Write(p []byte) (int, error) {
	if w.Len() == 0 && !bytes.Contains(p, []byte("internal error")) {
		panic("write failed")
	}
	return w.Buffer.Write(p)
}

func TestRunRecoversFromPanics(t *testing.T) {
	var stderr bytes.Buffer

	// A panic inside request handling is recovered by the handler.
	var stdout bytes.Buffer
	if code := run([]string{"--config", testConfig}, panicReader{}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout.String(), `"defer":true`) {
		t.Errorf("stdout %q", stdout.String())
	}

	// A panic outside it reaches the last-resort recover in run.
	w := &panicWriter{}
	if code := run([]string{"--config", testConfig}, strings.NewReader("{}"), w, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(w.String(), `"defer":true`) || !strings.Contains(w.String(), "internal error") {
		t.Errorf("stdout %q", w.String())
	}
}
