// Package provhelper answers the Choria Provisioner's helper requests: the
// provisioner (v0.16.0) runs the helper once per node with the node's
// request JSON on stdin and reads one reply JSON object from stdout.
//
// Every problem with a request becomes a reply with defer set, so the
// provisioner logs the reason and retries the node on its next cycle.
package provhelper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"time"
)

// MaxRequestBytes bounds stdin; a real request is about 1 KiB plus the
// server's inventory.
const MaxRequestBytes = 1 << 20

// Reply uses the JSON names of the provisioner's host.ConfigResponse. Its
// other members (shutdown, key, ssldir, action_policies, opa_policies,
// upgrade) are not used by this deployment and so are left out.
type Reply struct {
	Defer         bool              `json:"defer"`
	Msg           string            `json:"msg"`
	Certificate   string            `json:"certificate,omitempty"`
	CA            string            `json:"ca,omitempty"`
	Configuration map[string]string `json:"configuration,omitempty"`
	ServerClaims  *ServerClaims     `json:"server_claims,omitempty"`
}

// ServerClaims holds the server_claims members this helper sets. The
// provisioner decodes them into tokens.ServerClaims and reads only ou, exp,
// collectives, pub_subjects and permissions; the rest it fills in itself.
type ServerClaims struct {
	// ExpiresAt is an absolute Unix time: the provisioner computes the
	// validity as time.Until(exp).
	ExpiresAt   int64              `json:"exp"`
	Permissions *ServerPermissions `json:"permissions,omitempty"`
}

// Deferred is a reply telling the provisioner to try the node again later.
func Deferred(format string, args ...any) Reply {
	return Reply{Defer: true, Msg: fmt.Sprintf(format, args...)}
}

// Helper builds replies from a validated Config.
type Helper struct {
	cfg Config
	now func() time.Time
}

// New validates cfg; now may be nil for time.Now.
func New(cfg Config, now func() time.Time) (*Helper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Helper{cfg: cfg, now: now}, nil
}

// Handle reads one request from r and returns its reply. It never fails and
// never panics: every problem becomes a deferred reply.
func (h *Helper) Handle(r io.Reader) (reply Reply) {
	defer func() {
		if p := recover(); p != nil {
			// p may mention request data, which can hold the provisioning token.
			reply = Deferred("internal error in the provisioning helper")
		}
	}()

	data, err := io.ReadAll(io.LimitReader(r, MaxRequestBytes+1))
	if err != nil {
		return Deferred("could not read request: %v", err)
	}
	if len(data) > MaxRequestBytes {
		return Deferred("request larger than %d bytes", MaxRequestBytes)
	}
	return h.Reply(data)
}

// Reply builds the reply for one raw request.
func (h *Helper) Reply(data []byte) Reply {
	req, err := decodeRequest(data)
	if err != nil {
		return Deferred("invalid request: %v", err)
	}
	if err := req.Validate(); err != nil {
		return Deferred("invalid request: %v", err)
	}

	conf := make(map[string]string, len(h.cfg.Settings)+5)
	for k, v := range h.cfg.Settings {
		conf[k] = v
	}
	dir := req.ED25519PubKey.Directory
	conf[KeyIdentity] = req.Identity
	conf[KeySecurityProvider] = "choria"
	conf[KeyProvision] = "false"
	// The server keeps its seed and the provisioner's signed JWT in this
	// directory (go-choria's gen25519 and configure actions).
	conf[KeyTokenFile] = filepath.Join(dir, "server.jwt")
	conf[KeySeedFile] = filepath.Join(dir, "server.seed")

	// Defence in depth: every line the server will write must parse back
	// as the same key and value.
	for k, v := range conf {
		if err := validateSettingKey(k); err != nil {
			return Deferred("refusing to reply: %v", err)
		}
		if err := validateSettingValue(v); err != nil {
			return Deferred("refusing to reply: %q: %v", k, err)
		}
	}

	claims := &ServerClaims{
		ExpiresAt: h.now().Add(h.cfg.TokenValidity.Duration).Unix(),
	}
	if h.cfg.Permissions.any() {
		p := h.cfg.Permissions
		claims.Permissions = &p
	}

	return Reply{Configuration: conf, ServerClaims: claims}
}

// decodeRequest turns JSON errors into messages built from offsets and our
// own field names only: the errors of encoding/json can quote input bytes,
// and the input holds the provisioning token.
func decodeRequest(data []byte) (*Request, error) {
	if len(data) == 0 || isSpace(data) {
		return nil, errors.New("empty input")
	}
	var req Request
	err := json.Unmarshal(data, &req)
	if err == nil {
		return &req, nil
	}

	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		// encoding/json has no typed error for its nesting limit.
		if strings.Contains(syn.Error(), "exceeded max depth") {
			return nil, fmt.Errorf("JSON nested too deeply at byte %d", syn.Offset)
		}
		if syn.Offset >= int64(len(data)) {
			return nil, fmt.Errorf("truncated JSON (%d bytes)", len(data))
		}
		return nil, fmt.Errorf("malformed JSON at byte %d", syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("truncated JSON (%d bytes)", len(data))
	case errors.As(err, &typ):
		// Value can carry input digits ("number 12"); keep only the kind.
		kind, _, _ := strings.Cut(typ.Value, " ")
		if typ.Field == "" {
			return nil, fmt.Errorf("request is a JSON %s, not an object", kind)
		}
		return nil, fmt.Errorf("%s is a JSON %s, expected %s", typ.Field, kind, jsonKind(typ.Type))
	default:
		return nil, errors.New("malformed JSON")
	}
}

// jsonKind names a Go type the way the JSON request would spell it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.String:
		return "string"
	default:
		return t.Kind().String()
	}
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// Serve answers one request from in on out. If no reply is ready within the
// context's deadline it writes a deferred reply instead: the provisioner
// kills helpers after 10 s and then logs only the kill, not why.
func (h *Helper) Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	done := make(chan Reply, 1)
	go func() { done <- h.Handle(in) }()

	var reply Reply
	select {
	case reply = <-done:
	case <-ctx.Done():
		reply = Deferred("no complete request within the helper's time limit: %v", context.Cause(ctx))
	}
	return WriteReply(out, reply)
}

// WriteReply writes reply as one JSON line.
func WriteReply(out io.Writer, reply Reply) error {
	b, err := json.Marshal(reply)
	if err != nil {
		return fmt.Errorf("encoding reply: %w", err)
	}
	b = append(b, '\n')
	if _, err := out.Write(b); err != nil {
		return fmt.Errorf("writing reply: %w", err)
	}
	return nil
}
