package provhelper

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzReply: whatever the provisioner sends, the helper answers (a
// configuration or a deferral) without panicking, and a deferral never
// quotes the request's token.
func FuzzReply(f *testing.F) {
	real := realRequest(f)
	f.Add(real)
	f.Add(bytes.Replace(real, []byte(`"identity"`), []byte(`"identity ":`), 1))
	f.Add([]byte(`{"identity": "x", "token": "s3cret-token-value"}`))
	f.Add([]byte(`{"token": 12}`))
	f.Add([]byte(``))
	h := testHelper(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		reply := h.Reply(data)
		if reply.Defer {
			var req struct {
				Token string `json:"token"`
			}
			if json.Unmarshal(data, &req) == nil && len(req.Token) >= 8 && bytes.Contains([]byte(reply.Msg), []byte(req.Token)) {
				t.Fatalf("the deferral quotes the token: %q", reply.Msg)
			}
			return
		}
		if reply.Configuration == nil {
			t.Fatalf("neither a configuration nor a deferral: %+v", reply)
		}
	})
}
