package requests

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/choria-io/go-external/agent"
)

// FuzzInputs: no request data reaches a panic in decoding, in planning a
// download, or in building an HTTP request; an accepted download target
// is always an absolute, clean path.
func FuzzInputs(f *testing.F) {
	f.Add([]byte(`{"url": "http://plugins.choria.local/x.tar.gz", "target": "/tmp/x", "target_mode": "0644", "sha256": "` + "0000000000000000000000000000000000000000000000000000000000000000" + `"}`))
	f.Add([]byte(`{"url": "http://example.invalid/", "method": "POST", "headers": {"X-A": "b"}, "query": {"q": [1, "two"]}, "body": "x"}`))
	f.Add([]byte(`{"target": "relative", "target_mode": "4755"}`))
	f.Add([]byte(`{"url": "://", "headers": {"bad header": "x"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &agent.Request{Agent: "requests", Action: "download", Data: data}
		rep := &agent.Reply{}
		var dl DownloadInput
		if parseInput(req, rep, &dl) {
			if p, err := planDownload(Config{DownloadDirectories: []string{"/tmp"}}, &dl); err == nil && (!filepath.IsAbs(p.target) || filepath.Clean(p.target) != p.target) {
				t.Fatalf("target %q accepted as %q", dl.Target, p.target)
			}
		}
		var in RequestInput
		if parseInput(req, &agent.Reply{}, &in) {
			x := &exchange{rawURL: in.URL, method: in.Method, query: in.Query, headers: in.Headers, username: in.Username, password: in.Password}
			_, _ = x.build(context.Background())
		}
	})
}
