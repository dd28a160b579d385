package walkthrough

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/choria-io/tokens"
)

// CodeVerifier implements the scenario's verify kinds in Go.
type CodeVerifier struct {
	// IssuerPublicKey is the organisation issuer's ed25519 public key, hex.
	IssuerPublicKey string
	// Go is the go command compiling generated packages; "go" on PATH,
	// then $GOROOT/bin/go, by default.
	Go string
	// TempDir holds the modules compiled for go-package (os.TempDir by default).
	TempDir string
}

func (v CodeVerifier) Verify(ctx context.Context, params map[string]string, output string) error {
	switch params["kind"] {
	case VerifySubmissionSignature:
		return VerifySubmission([]byte(output), v.IssuerPublicKey, params["msg_id"], params["identity"])
	case VerifyGoPackage:
		return v.compile(ctx, output, params["require"], params["package"])
	}
	return fmt.Errorf("unknown verify kind %q", params["kind"])
}

// streamMessage is `choria broker stream get --json`: headers in NATS
// wire form and the payload, both base64.
type streamMessage struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	Headers []byte `json:"hdrs"`
	Data    []byte `json:"data"`
}

// Submission headers, as go-choria's submission package sets them.
const (
	hdrToken     = "Choria-Token"
	hdrSignature = "Choria-Signature"
	hdrIdentity  = "Choria-Identity"
	hdrMsgID     = "Nats-Msg-Id"
)

// VerifySubmission checks a signed submission as a consumer of the stream
// would: the Choria-Token is a server token whose chain verifies against
// the organisation issuer, and Choria-Signature is that token's key's
// ed25519 signature of the payload. go-choria v0.30.2
// (submission.Message.NatsMessage) signs msg.Data, the payload alone, with
// the server's seed and hex-encodes the signature.
func VerifySubmission(getJSON []byte, issuerPublicHex, msgID, identity string) error {
	var m streamMessage
	if err := json.Unmarshal(getJSON, &m); err != nil {
		return fmt.Errorf("decoding the stream message: %w", err)
	}
	hdr, err := parseNATSHeaders(m.Headers)
	if err != nil {
		return err
	}
	if got := hdr.Get(hdrMsgID); got != msgID {
		return fmt.Errorf("%s is %q, want %q", hdrMsgID, got, msgID)
	}
	if got := hdr.Get(hdrIdentity); got != identity {
		return fmt.Errorf("%s is %q, want %q", hdrIdentity, got, identity)
	}
	token, sigHex := hdr.Get(hdrToken), hdr.Get(hdrSignature)
	if token == "" || sigHex == "" {
		return fmt.Errorf("the message lacks %s or %s (headers: %v)", hdrToken, hdrSignature, keys(hdr))
	}
	issuer, err := hex.DecodeString(strings.TrimSpace(issuerPublicHex))
	if err != nil || len(issuer) != ed25519.PublicKeySize {
		return fmt.Errorf("the issuer public key %q is not a hex ed25519 key", issuerPublicHex)
	}
	claims, err := tokens.ParseServerToken(token, ed25519.PublicKey(issuer))
	if err != nil {
		return fmt.Errorf("the Choria-Token does not verify against the organisation issuer: %w", err)
	}
	if !strings.HasPrefix(claims.Issuer, tokens.ChainIssuerPrefix) {
		return fmt.Errorf("the Choria-Token was issued by %q, not through a chain issuer (a provisioner)", claims.Issuer)
	}
	if claims.ChoriaIdentity != identity {
		return fmt.Errorf("the Choria-Token is for %q, not %q", claims.ChoriaIdentity, identity)
	}
	pub, err := hex.DecodeString(claims.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("the Choria-Token's public key %q is not a hex ed25519 key", claims.PublicKey)
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return fmt.Errorf("the Choria-Signature is not hex: %w", err)
	}
	if !ed25519.Verify(ed25519.PublicKey(pub), m.Data, sig) {
		return fmt.Errorf("the Choria-Signature is not the token key's signature of the %d byte payload", len(m.Data))
	}
	return nil
}

// parseNATSHeaders reads a NATS header block: "NATS/1.0" then MIME headers.
func parseNATSHeaders(b []byte) (textproto.MIMEHeader, error) {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	line, err := r.ReadLine()
	if err != nil || !strings.HasPrefix(line, "NATS/1.0") {
		return nil, fmt.Errorf("the message has no NATS headers (first line %q)", line)
	}
	h, err := r.ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the message headers: %w", err)
	}
	return h, nil
}

func keys(h textproto.MIMEHeader) []string { return slices.Sorted(maps.Keys(h)) }

// compile unpacks a base64 tar of a generated package into a fresh module
// that requires require ("module version") and builds it; the package must
// be named pkg. The go command resolves the module graph as usual
// (GOFLAGS=-mod=mod, its cache first, then GOPROXY): a fresh machine's
// cache lacks go.mod files of go-choria's dependencies this repository
// never builds, so an offline-only build failed there.
func (v CodeVerifier) compile(ctx context.Context, b64, require, pkg string) error {
	archive, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return fmt.Errorf("the output is not a base64 tar: %w", err)
	}
	mod, err := os.MkdirTemp(v.TempDir, "walkthrough-go-package-")
	if err != nil {
		return fmt.Errorf("making a module to compile in: %w", err)
	}
	defer os.RemoveAll(mod)
	dir := filepath.Join(mod, "generated")
	n, err := untar(archive, dir)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("the tar holds no Go files")
	}
	modPath, version, ok := strings.Cut(require, " ")
	if !ok {
		return fmt.Errorf("require %q is not \"module version\"", require)
	}
	gomod := fmt.Sprintf("module walkthrough.invalid/generated\n\ngo 1.25.0\n\nrequire %s %s\n", modPath, version)
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		return fmt.Errorf("writing go.mod: %w", err)
	}
	goCmd, err := v.goCommand()
	if err != nil {
		return err
	}
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	if _, err := run("build", "./generated"); err != nil {
		return err
	}
	name, err := run("list", "-f", "{{.Name}}", "./generated")
	if err != nil {
		return err
	}
	if strings.TrimSpace(name) != pkg {
		return fmt.Errorf("the generated package is %q, want %q", strings.TrimSpace(name), pkg)
	}
	return nil
}

func (v CodeVerifier) goCommand() (string, error) {
	if v.Go != "" {
		return v.Go, nil
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go"), nil
	}
	for _, p := range []string{"/usr/local/go/bin/go", "/usr/lib/go/bin/go"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no go command to compile the generated package with: put go on PATH")
}

// untar writes the regular files of a tar below dir, refusing paths that
// leave it, and counts the Go files.
func untar(b []byte, dir string) (int, error) {
	tr := tar.NewReader(bytes.NewReader(b))
	goFiles := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return goFiles, nil
		}
		if err != nil {
			return goFiles, fmt.Errorf("reading the generated package's tar: %w", err)
		}
		name := filepath.Clean(h.Name)
		if !filepath.IsLocal(name) {
			return goFiles, fmt.Errorf("the tar holds %q, outside its directory", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return goFiles, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return goFiles, err
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return goFiles, fmt.Errorf("reading %s from the tar: %w", h.Name, err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return goFiles, err
			}
			if strings.HasSuffix(name, ".go") {
				goFiles++
			}
		}
	}
}
