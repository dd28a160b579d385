package provhelper

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/choria-io/tokens"
)

// secretToken is the provisioning token (jwt.cht) in testdata/provisioning-request.json.
const secretToken = "s3cret"

var fixedNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func testConfig(t testing.TB) Config {
	t.Helper()
	c, err := LoadConfig("testdata/config.json")
	if err != nil {
		t.Fatalf("loading test config: %v", err)
	}
	return c
}

func testHelper(t testing.TB) *Helper {
	t.Helper()
	h, err := New(testConfig(t), func() time.Time { return fixedNow })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

func realRequest(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/provisioning-request.json")
	if err != nil {
		t.Fatalf("reading request: %v", err)
	}
	return b
}

// requestWith returns the real request with top-level members replaced
// (a nil value deletes the member).
func requestWith(t testing.TB, changes map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(realRequest(t), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range changes {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pubkey(pk, dir string) map[string]any {
	return map[string]any{"public_key": pk, "directory": dir, "signature": "00"}
}

const goodPK = "e7cd782bf0f8044f4bfe6efb970b8e320d06bd398b65c2f9f812bc92c865c40e"

func TestHandleRealRequest(t *testing.T) {
	h := testHelper(t)
	cfg := testConfig(t)

	reply := h.Handle(bytes.NewReader(realRequest(t)))
	if reply.Defer {
		t.Fatalf("real request deferred: %s", reply.Msg)
	}

	want := map[string]string{
		"identity":                          "s16.choria.local",
		"plugin.security.provider":          "choria",
		"plugin.choria.server.provision":    "false",
		"plugin.security.choria.token_file": "/etc/choria/server.jwt",
		"plugin.security.choria.seed_file":  "/etc/choria/server.seed",
	}
	for k, v := range cfg.Settings {
		if _, own := want[k]; !own {
			want[k] = v
		}
	}
	if len(reply.Configuration) != len(want) {
		t.Errorf("configuration has %d keys, want %d", len(reply.Configuration), len(want))
	}
	for k, v := range want {
		if got := reply.Configuration[k]; got != v {
			t.Errorf("configuration[%q] = %q, want %q", k, got, v)
		}
	}

	if reply.ServerClaims == nil {
		t.Fatal("no server_claims")
	}
	if wantExp := fixedNow.Add(43800 * time.Hour).Unix(); reply.ServerClaims.ExpiresAt != wantExp {
		t.Errorf("exp = %d, want %d", reply.ServerClaims.ExpiresAt, wantExp)
	}
	if p := reply.ServerClaims.Permissions; p == nil || !p.Streams || !p.Submission || !p.ServiceHost || p.Governor {
		t.Errorf("permissions = %+v, want streams, submission, service_host", p)
	}
}

// provisionerReply mirrors what the provisioner decodes our stdout into
// (host.ConfigResponse in choria-io/provisioner v0.16.0), with the real
// tokens.ServerClaims type.
type provisionerReply struct {
	Defer         bool                 `json:"defer"`
	Shutdown      bool                 `json:"shutdown"`
	Msg           string               `json:"msg"`
	Certificate   string               `json:"certificate"`
	CA            string               `json:"ca"`
	ServerClaims  *tokens.ServerClaims `json:"server_claims"`
	Configuration map[string]string    `json:"configuration"`
}

func TestReplyDecodesAsProvisionerExpects(t *testing.T) {
	// Real clock: the provisioner measures the validity with time.Until.
	h, err := New(testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := h.Serve(context.Background(), bytes.NewReader(realRequest(t)), &out); err != nil {
		t.Fatal(err)
	}

	var r provisionerReply
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("provisioner could not decode %s: %v", out.String(), err)
	}
	if r.Defer || r.Shutdown {
		t.Fatalf("defer=%v shutdown=%v msg=%q", r.Defer, r.Shutdown, r.Msg)
	}
	if r.ServerClaims == nil || r.ServerClaims.ExpiresAt == nil {
		t.Fatalf("no exp in server_claims: %s", out.String())
	}
	// The provisioner falls back to its default for validities <= 1h; the
	// reference helper's relative exp hit exactly that.
	validity := time.Until(r.ServerClaims.ExpiresAt.Time)
	if validity < 43799*time.Hour || validity > 43800*time.Hour {
		t.Errorf("validity as the provisioner computes it = %v, want about 43800h", validity)
	}
	p := r.ServerClaims.Permissions
	if p == nil || !p.Streams || !p.Submission || !p.ServiceHost || p.Governor {
		t.Errorf("tokens.ServerPermissions = %+v", p)
	}
	if r.ServerClaims.OrganizationUnit != "" || len(r.ServerClaims.Collectives) != 0 {
		t.Errorf("ou/collectives should be left to the provisioner's defaults: %+v", r.ServerClaims)
	}
	if r.Configuration["identity"] != "s16.choria.local" {
		t.Errorf("identity = %q", r.Configuration["identity"])
	}
	if strings.Contains(out.String(), secretToken) {
		t.Error("reply contains the provisioning token")
	}
}

func TestHandleBadRequests(t *testing.T) {
	real := realRequest(t)
	nested := strings.Repeat("[", 200000) + strings.Repeat("]", 200000)

	cases := []struct {
		name  string
		input []byte
		msg   string
	}{
		{"empty", nil, "empty input"},
		{"whitespace", []byte(" \n\t "), "empty input"},
		{"malformed", []byte(`{"identity": "s16.choria.local",,}`), "malformed JSON at byte"},
		{"not JSON", []byte("identity=s16.choria.local"), "malformed JSON"},
		{"truncated", real[:len(real)/2], "truncated JSON"},
		{"truncated after one byte", []byte("{"), "truncated JSON"},
		{"trailing garbage", append(append([]byte{}, real...), []byte("{}")...), "malformed JSON"},
		{"array", []byte(`[1,2]`), "request is a JSON array, not an object"},
		{"string", []byte(`"s16.choria.local"`), "request is a JSON string, not an object"},
		{"null", []byte(`null`), "identity missing"},
		{"empty object", []byte(`{}`), "identity missing"},
		{"identity wrong type", requestWith(t, map[string]any{"identity": 42}), "identity is a JSON number, expected string"},
		{"pubkey wrong type", requestWith(t, map[string]any{"ed25519_pubkey": "abc"}), "ed25519_pubkey is a JSON string, expected object"},
		{"missing identity", requestWith(t, map[string]any{"identity": nil}), "identity missing"},
		{"empty identity", requestWith(t, map[string]any{"identity": ""}), "identity missing"},
		{"missing pubkey", requestWith(t, map[string]any{"ed25519_pubkey": nil}), "ed25519_pubkey missing"},
		{"null pubkey", []byte(`{"identity":"a.example","ed25519_pubkey":null}`), "ed25519_pubkey missing"},
		{"missing public_key", requestWith(t, map[string]any{"ed25519_pubkey": pubkey("", "/etc/choria")}), "public_key missing"},
		{"short public_key", requestWith(t, map[string]any{"ed25519_pubkey": pubkey(goodPK[:62], "/etc/choria")}), "must be 64 hex characters, got 62"},
		{"bad hex", requestWith(t, map[string]any{"ed25519_pubkey": pubkey("zz"+goodPK[2:], "/etc/choria")}), "not hex"},
		{"missing directory", requestWith(t, map[string]any{"ed25519_pubkey": pubkey(goodPK, "")}), "directory missing"},
		{"relative directory", requestWith(t, map[string]any{"ed25519_pubkey": pubkey(goodPK, "etc/choria")}), "is not absolute"},
		{"dot directory", requestWith(t, map[string]any{"ed25519_pubkey": pubkey(goodPK, "./choria")}), "is not absolute"},
		{"unclean directory", requestWith(t, map[string]any{"ed25519_pubkey": pubkey(goodPK, "/etc/choria/../../tmp")}), "not a clean path"},
		{"trailing slash directory", requestWith(t, map[string]any{"ed25519_pubkey": pubkey(goodPK, "/etc/choria/")}), "not a clean path"},
		{"directory with newline", requestWith(t, map[string]any{"ed25519_pubkey": pubkey(goodPK, "/etc/choria\nidentity=evil")}), "control character"},
		{"directory with trailing space", requestWith(t, map[string]any{"ed25519_pubkey": pubkey(goodPK, "/etc/choria ")}), "white space"},
		{"huge directory", requestWith(t, map[string]any{"ed25519_pubkey": pubkey(goodPK, "/"+strings.Repeat("a", 100000))}), "longer than 1024"},

		// Hostile identities: each could inject or alter server.conf lines
		// or NATS subjects.
		{"identity with newline", requestWith(t, map[string]any{"identity": "s16.choria.local\nplugin.security.provider=file"}), "not a valid host name"},
		{"identity with CR", requestWith(t, map[string]any{"identity": "s16\r"}), "not a valid host name"},
		{"identity with equals", requestWith(t, map[string]any{"identity": "a=b"}), "not a valid host name"},
		{"identity with space", requestWith(t, map[string]any{"identity": "s16 choria"}), "not a valid host name"},
		{"identity with wildcard", requestWith(t, map[string]any{"identity": "*.choria.local"}), "not a valid host name"},
		{"identity with gt", requestWith(t, map[string]any{"identity": ">"}), "not a valid host name"},
		{"identity with NUL", requestWith(t, map[string]any{"identity": "s16\x00"}), "not a valid host name"},
		{"identity with unicode", requestWith(t, map[string]any{"identity": "s16.chöria.local"}), "character 'ö' not allowed"},
		{"identity with empty label", requestWith(t, map[string]any{"identity": "s16..local"}), "empty label"},
		{"identity with trailing dot", requestWith(t, map[string]any{"identity": "s16.choria.local."}), "empty label"},
		{"identity with leading hyphen", requestWith(t, map[string]any{"identity": "-s16.local"}), "starts or ends with '-'"},
		{"identity label too long", requestWith(t, map[string]any{"identity": strings.Repeat("a", 64) + ".local"}), "label longer than 63"},
		{"huge identity", requestWith(t, map[string]any{"identity": strings.Repeat("a", 500000)}), "identity longer than 253"},
		{"deeply nested junk", []byte(`{"identity":"s16.choria.local","junk":` + nested + `}`), "JSON nested too deeply"},
		{"nested junk in jwt", []byte(`{"identity":"s16.choria.local","jwt":{"cht":"s3cret","x":` + nested + `}}`), "JSON nested too deeply"},
		{"control byte in token", []byte(`{"jwt":{"cht":"s3cr` + "\x01" + `et"},"identity":"s16.choria.local"}`), "malformed JSON at byte"},
		{"token where identity goes", []byte(`{"identity":{"cht":"s3cret"}}`), "identity is a JSON object"},
		{"oversized", append([]byte(`{"identity":"`), bytes.Repeat([]byte("a"), MaxRequestBytes)...), "larger than 1048576 bytes"},
	}

	h := testHelper(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reply := h.Handle(bytes.NewReader(tc.input))
			if !reply.Defer {
				t.Fatalf("not deferred: %+v", reply)
			}
			t.Logf("msg: %s", reply.Msg)
			if !strings.Contains(reply.Msg, tc.msg) {
				t.Errorf("msg = %q, want it to contain %q", reply.Msg, tc.msg)
			}
			if reply.Configuration != nil || reply.ServerClaims != nil {
				t.Errorf("deferred reply carries configuration or claims: %+v", reply)
			}
			if strings.Contains(reply.Msg, secretToken) {
				t.Errorf("msg echoes the provisioning token: %q", reply.Msg)
			}
			if len(reply.Msg) > 600 {
				t.Errorf("msg is %d bytes long", len(reply.Msg))
			}
			var out bytes.Buffer
			if err := WriteReply(&out, reply); err != nil {
				t.Fatal(err)
			}
			if !json.Valid(out.Bytes()) {
				t.Errorf("reply is not valid JSON: %q", out.String())
			}
		})
	}
}

func TestHandleAcceptsVariants(t *testing.T) {
	h := testHelper(t)
	cases := []struct {
		name, identity, pk, dir string
	}{
		{"upper case hex and root dir", "S16.Choria.Local", strings.ToUpper(goodPK), "/"},
		{"single label", "s16", goodPK, "/var/lib/choria"},
		{"max length identity", strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("b", 61), goodPK, "/etc/choria"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reply := h.Handle(bytes.NewReader(requestWith(t, map[string]any{
				"identity":       tc.identity,
				"ed25519_pubkey": pubkey(tc.pk, tc.dir),
			})))
			if reply.Defer {
				t.Fatalf("deferred: %s", reply.Msg)
			}
			if reply.Configuration["identity"] != tc.identity {
				t.Errorf("identity = %q", reply.Configuration["identity"])
			}
			if want := filepath.Join(tc.dir, "server.jwt"); reply.Configuration["plugin.security.choria.token_file"] != want {
				t.Errorf("token_file = %q, want %q", reply.Configuration["plugin.security.choria.token_file"], want)
			}
		})
	}
}

func TestHandleSizeLimit(t *testing.T) {
	h := testHelper(t)
	real := realRequest(t)

	// Exactly the limit, padded with JSON white space, is accepted.
	atLimit := append(append([]byte{}, real...), bytes.Repeat([]byte(" "), MaxRequestBytes-len(real))...)
	if r := h.Handle(bytes.NewReader(atLimit)); r.Defer {
		t.Fatalf("request of exactly %d bytes deferred: %s", len(atLimit), r.Msg)
	}
	over := append(atLimit, ' ')
	r := h.Handle(bytes.NewReader(over))
	if !r.Defer || !strings.Contains(r.Msg, "larger than") {
		t.Fatalf("request of %d bytes: %+v", len(over), r)
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("boom " + secretToken) }

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestHandleRecoversAndReportsReadErrors(t *testing.T) {
	h := testHelper(t)

	r := h.Handle(panicReader{})
	if !r.Defer || r.Msg != "internal error in the provisioning helper" {
		t.Errorf("panic: %+v", r)
	}
	r = h.Handle(errReader{})
	if !r.Defer || !strings.Contains(r.Msg, "could not read request") {
		t.Errorf("read error: %+v", r)
	}
}

func TestServeTimesOut(t *testing.T) {
	h := testHelper(t)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	if err := h.Serve(ctx, pr, &out); err != nil {
		t.Fatal(err)
	}
	var r Reply
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%q: %v", out.String(), err)
	}
	if !r.Defer || !strings.Contains(r.Msg, "time limit") {
		t.Errorf("reply = %+v", r)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestServeReportsWriteErrors(t *testing.T) {
	h := testHelper(t)
	err := h.Serve(context.Background(), bytes.NewReader(realRequest(t)), failWriter{})
	if err == nil || !strings.Contains(err.Error(), "writing reply") {
		t.Errorf("err = %v", err)
	}
}

func TestReplyJSONShape(t *testing.T) {
	var out bytes.Buffer
	if err := WriteReply(&out, Deferred("identity missing")); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), `{"defer":true,"msg":"identity missing"}`+"\n"; got != want {
		t.Errorf("deferred reply = %q, want %q", got, want)
	}

	out.Reset()
	h := testHelper(t)
	if err := WriteReply(&out, h.Handle(bytes.NewReader(realRequest(t)))); err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"defer", "msg", "configuration", "server_claims"} {
		if _, ok := m[k]; !ok {
			t.Errorf("reply lacks %q: %s", k, out.String())
		}
	}
	if string(m["defer"]) != "false" {
		t.Errorf("defer = %s", m["defer"])
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(m["server_claims"], &claims); err != nil {
		t.Fatal(err)
	}
	// 2026-11-25T12:00Z is 1795608000; plus 43800 h (157680000 s).
	if got, want := string(claims["exp"]), "1953288000"; got != want {
		t.Errorf("exp = %s, want the absolute Unix time %s", got, want)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if _, err := New(Config{}, nil); err == nil {
		t.Fatal("New accepted an empty config")
	}
}

// FuzzHandle checks that no input panics, every reply is JSON, and any
// configuration it produces cannot inject lines.
func FuzzHandle(f *testing.F) {
	f.Add(realRequest(f))
	f.Add([]byte(`{"identity":"a\nb","ed25519_pubkey":{"public_key":"` + goodPK + `","directory":"/etc"}}`))
	f.Add([]byte(`{"identity":"a","ed25519_pubkey":{"public_key":"` + goodPK + `","directory":"/e\u2028tc"}}`))
	f.Add([]byte(`[[[[`))
	h := testHelper(f)

	f.Fuzz(func(t *testing.T, in []byte) {
		r := h.Handle(bytes.NewReader(in))
		var out bytes.Buffer
		if err := WriteReply(&out, r); err != nil {
			t.Fatal(err)
		}
		if !json.Valid(out.Bytes()) {
			t.Fatalf("invalid JSON reply %q", out.String())
		}
		if r.Defer {
			return
		}
		for k, v := range r.Configuration {
			if strings.ContainsAny(k+v, "\r\n\x00") {
				t.Fatalf("line injection through %q = %q", k, v)
			}
		}
	})
}

func BenchmarkHandle(b *testing.B) {
	h := testHelper(b)
	req := realRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		var out bytes.Buffer
		if err := WriteReply(&out, h.Handle(bytes.NewReader(req))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcess is everything one helper process does after start-up:
// load the config, then answer the request.
func BenchmarkProcess(b *testing.B) {
	req := realRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := LoadConfig("testdata/config.json")
		if err != nil {
			b.Fatal(err)
		}
		h, err := New(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		var out bytes.Buffer
		if err := h.Serve(context.Background(), bytes.NewReader(req), &out); err != nil {
			b.Fatal(err)
		}
	}
}
