package requests

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/choria-io/go-external/agent"
	"github.com/stretchr/testify/require"
)

// echoServer replies with what it received so tests can see every input.
func echoServer(t *testing.T) *httptest.Server {
	t.Helper()

	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		user, pass, ok := r.BasicAuth()
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Query", r.URL.RawQuery)
		w.Header().Set("X-Header", strings.Join(r.Header.Values("X-Test"), "|"))
		w.Header().Set("X-Auth", fmt.Sprintf("%t:%s:%s", ok, user, pass))
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		fmt.Fprintf(w, "body=%s", body)
	})
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/status/"), "%d", &code)
		w.WriteHeader(code)
		fmt.Fprintf(w, "status %d", code)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/echo?from=redirect", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/slowbody", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/size/", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/size/"), "%d", &n)
		w.Write([]byte(strings.Repeat("x", n)))
	})

	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	return srv
}

func TestRequestInputs(t *testing.T) {
	srv := echoServer(t)
	a := New(openPolicy(Config{}))

	bodyFile := filepath.Join(t.TempDir(), "body")
	require.NoError(t, os.WriteFile(bodyFile, []byte("from file"), 0o600))

	cases := []struct {
		name   string
		input  map[string]any
		expect map[string]string
		body   string
	}{
		{
			name:   "defaults to GET",
			input:  map[string]any{"url": srv.URL + "/echo"},
			expect: map[string]string{"X-Method": "GET", "X-Auth": "false::"},
			body:   "body=",
		},
		{
			name:   "method query and headers",
			input:  map[string]any{"url": srv.URL + "/echo?a=1", "method": "DELETE", "query": map[string]any{"b": "two", "n": 3, "t": true, "l": []any{"x", "y"}}, "headers": map[string]any{"X-Test": []any{"one", "two"}}},
			expect: map[string]string{"X-Method": "DELETE", "X-Query": "a=1&b=two&l=x&l=y&n=3&t=true", "X-Header": "one|two"},
			body:   "body=",
		},
		{
			name:   "lower case method",
			input:  map[string]any{"url": srv.URL + "/echo", "method": "options"},
			expect: map[string]string{"X-Method": "OPTIONS"},
			body:   "body=",
		},
		{
			name:   "basic auth",
			input:  map[string]any{"url": srv.URL + "/echo", "username": "bob", "password": "s3cret"},
			expect: map[string]string{"X-Auth": "true:bob:s3cret"},
			body:   "body=",
		},
		{
			name:   "body",
			input:  map[string]any{"url": srv.URL + "/echo", "method": "POST", "body": `{"hello":"world"}`},
			expect: map[string]string{"X-Method": "POST"},
			body:   `body={"hello":"world"}`,
		},
		{
			name:   "body file",
			input:  map[string]any{"url": srv.URL + "/echo", "method": "PUT", "body_file": bodyFile},
			expect: map[string]string{"X-Method": "PUT"},
			body:   "body=from file",
		},
		{
			name:   "expected status code",
			input:  map[string]any{"url": srv.URL + "/status/404", "statuscode": 404},
			body:   "status 404",
			expect: map[string]string{},
		},
		{
			name:   "non 200 2xx",
			input:  map[string]any{"url": srv.URL + "/status/202"},
			body:   "status 202",
			expect: map[string]string{},
		},
		{
			name:   "follows redirects",
			input:  map[string]any{"url": srv.URL + "/redirect"},
			expect: map[string]string{"X-Query": "from=redirect"},
			body:   "body=",
		},
		{
			name:   "head",
			input:  map[string]any{"url": srv.URL + "/echo", "method": "HEAD"},
			expect: map[string]string{"X-Method": "HEAD"},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.input["method"] != "options" {
				requireDDLValid(t, "request", tc.input)
			}

			rep, out := call(t, a, "request", tc.input, nil)
			requireOK(t, rep)

			code := 200
			if c, ok := tc.input["statuscode"].(int); ok {
				code = c
			}
			if strings.Contains(tc.name, "2xx") {
				code = 202
			}
			require.EqualValues(t, code, out["statuscode"])
			require.Equal(t, tc.body, out["body"])
			require.Greater(t, out["duration"], 0.0)

			headers := out["headers"].(map[string]any)
			for k, v := range tc.expect {
				require.Equal(t, v, headers[k], "header %s", k)
			}
			if tc.name == "defaults to GET" {
				require.Equal(t, "a, b", headers["X-Multi"])
			}
		})
	}
}

func TestRequestFailures(t *testing.T) {
	srv := echoServer(t)

	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	require.NoError(t, os.WriteFile(big, []byte(strings.Repeat("x", 101)), 0o600))

	// a listener that is closed gives connection refused on loopback
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	cfg := openPolicy(Config{Timeout: 300 * time.Millisecond, MaxBodyBytes: 100, MaxRequestBodyBytes: 100})

	cases := []struct {
		name     string
		input    map[string]any
		settings map[string]string
		code     agent.StatusCode
		msg      string
		status   int
	}{
		{name: "missing url", input: map[string]any{}, code: agent.InvalidData, msg: "url is required"},
		{name: "empty url", input: map[string]any{"url": " "}, code: agent.InvalidData, msg: "url is required"},
		{name: "malformed url", input: map[string]any{"url": "http://bad host/%zz"}, code: agent.InvalidData, msg: "invalid url"},
		{name: "unsupported scheme", input: map[string]any{"url": "ftp://example.net/x"}, code: agent.InvalidData, msg: "scheme must be http or https"},
		{name: "no host", input: map[string]any{"url": "http:///path"}, code: agent.InvalidData, msg: "no host"},
		{name: "unsupported method", input: map[string]any{"url": srv.URL, "method": "BREW"}, code: agent.InvalidData, msg: `unsupported method "BREW"`},
		{name: "body and body_file", input: map[string]any{"url": srv.URL, "body": "x", "body_file": big}, code: agent.InvalidData, msg: "body and body_file cannot be used together"},
		{name: "missing body_file", input: map[string]any{"url": srv.URL, "body_file": filepath.Join(dir, "nope")}, code: agent.InvalidData, msg: "cannot read body_file"},
		{name: "body_file is a directory", input: map[string]any{"url": srv.URL, "body_file": dir}, code: agent.InvalidData, msg: "cannot read body_file"},
		{name: "oversized body_file", input: map[string]any{"url": srv.URL, "body_file": big}, code: agent.InvalidData, msg: "is larger than the 100 bytes allowed"},
		{name: "oversized body", input: map[string]any{"url": srv.URL, "body": strings.Repeat("y", 101)}, code: agent.InvalidData, msg: "body is larger than the 100 bytes allowed"},
		{name: "password without username", input: map[string]any{"url": srv.URL, "password": "x"}, code: agent.InvalidData, msg: "password given without username"},
		{name: "invalid header name", input: map[string]any{"url": srv.URL, "headers": map[string]any{"Bad Header": "x"}}, code: agent.InvalidData, msg: `invalid header name "Bad Header"`},
		{name: "header injection", input: map[string]any{"url": srv.URL, "headers": map[string]any{"X-A": "x\r\nX-B: y"}}, code: agent.InvalidData, msg: "may not contain line breaks"},
		{name: "control character in a header", input: map[string]any{"url": srv.URL, "headers": map[string]any{"X-A": "x\x00y"}}, code: agent.InvalidData, msg: "other control characters"},
		{name: "empty header name", input: map[string]any{"url": srv.URL, "headers": map[string]any{"": "x"}}, code: agent.InvalidData, msg: `invalid header name ""`},
		{name: "nested header value", input: map[string]any{"url": srv.URL, "headers": map[string]any{"X-A": map[string]any{"a": 1}}}, code: agent.InvalidData, msg: `header "X-A": value must be`},
		{name: "nested query value", input: map[string]any{"url": srv.URL, "query": map[string]any{"q": []any{[]any{"a"}}}}, code: agent.InvalidData, msg: `query "q": nested lists`},
		{name: "undeclared input", input: map[string]any{"url": srv.URL, "timeout": 10}, code: agent.InvalidData, msg: `unknown field "timeout"`},
		{name: "wrong input type", input: map[string]any{"url": srv.URL, "statuscode": "200"}, code: agent.InvalidData, msg: "invalid request data"},
		{name: "invalid statuscode", input: map[string]any{"url": srv.URL, "statuscode": 1000}, code: agent.InvalidData, msg: "invalid statuscode 1000"},
		{name: "non 2xx", input: map[string]any{"url": srv.URL + "/status/500"}, code: agent.Aborted, msg: "returned status code 500, expected a 2xx status code", status: 500},
		{name: "not found", input: map[string]any{"url": srv.URL + "/status/404"}, code: agent.Aborted, msg: "returned status code 404", status: 404},
		{name: "unexpected status", input: map[string]any{"url": srv.URL + "/status/200", "statuscode": 201}, code: agent.Aborted, msg: "returned status code 200, expected 201", status: 200},
		{name: "redirect loop", input: map[string]any{"url": srv.URL + "/loop"}, code: agent.Aborted, msg: "stopped after 10 redirects"},
		{name: "timeout", input: map[string]any{"url": srv.URL + "/slow"}, code: agent.Aborted, msg: "timed out after 300ms"},
		{name: "timeout reading body", input: map[string]any{"url": srv.URL + "/slowbody"}, code: agent.Aborted, msg: "timed out after 300ms", status: 200},
		{name: "oversized response", input: map[string]any{"url": srv.URL + "/size/101"}, code: agent.Aborted, msg: "larger than the 100 bytes allowed", status: 200},
		{name: "connection refused", input: map[string]any{"url": closedURL}, code: agent.Aborted, msg: "connection refused"},
		{name: "bad timeout setting", input: map[string]any{"url": srv.URL}, settings: map[string]string{"timeout": "soon"}, code: agent.Aborted, msg: "invalid agent configuration timeout"},
		{name: "bad size setting", input: map[string]any{"url": srv.URL}, settings: map[string]string{"max_body_bytes": "-1"}, code: agent.Aborted, msg: "invalid agent configuration max_body_bytes"},
		{name: "timeout setting applies", input: map[string]any{"url": srv.URL + "/slow"}, settings: map[string]string{"timeout": "50ms"}, code: agent.Aborted, msg: "timed out after 50ms"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.NotPanics(t, func() {
				rep, out := call(t, New(cfg), "request", tc.input, tc.settings)
				requireFailed(t, rep, tc.code, tc.msg)
				require.EqualValues(t, tc.status, out["statuscode"])
			})
		})
	}
}

func TestRequestBodyLimitIsInclusive(t *testing.T) {
	srv := echoServer(t)

	rep, out := call(t, New(openPolicy(Config{MaxBodyBytes: 100})), "request", map[string]any{"url": srv.URL + "/size/100"}, nil)
	requireOK(t, rep)
	require.Len(t, out["body"], 100)

	rep, _ = call(t, New(openPolicy(Config{MaxBodyBytes: 100})), "request", map[string]any{"url": srv.URL + "/size/100"}, map[string]string{"max_body_bytes": "99"})
	requireFailed(t, rep, agent.Aborted, "larger than the 99 bytes allowed")
}

func TestRequestRedactsPasswordInErrors(t *testing.T) {
	srv := echoServer(t)
	u := strings.Replace(srv.URL, "http://", "http://bob:hunter2@", 1) + "/status/500"

	rep, _ := call(t, New(openPolicy(Config{})), "request", map[string]any{"url": u}, nil)
	requireFailed(t, rep, agent.Aborted, "status code 500")
	require.NotContains(t, rep.StatusMessage, "hunter2")
}
