package walkthrough

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/choria-io/tokens"
	"github.com/reproducible-choria/deployment/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// signedSubmission builds what `choria broker stream get --json` shows for
// a message a provisioned server submitted with --sign: a server token
// issued by a chain issuer (the provisioner) that the organisation issuer
// signed, and the server key's signature of the payload.
type signedSubmission struct {
	issuerPub ed25519.PublicKey
	issuerPri ed25519.PrivateKey
	serverPri ed25519.PrivateKey
	token     string
	payload   []byte
	identity  string
	msgID     string
	signOver  []byte // what is signed; the payload unless a test says otherwise
}

func newSignedSubmission(t *testing.T) *signedSubmission {
	t.Helper()
	s := &signedSubmission{identity: "server1.choria.local", msgID: "36b59cb1-6714-4400-a622-18a6a571ab9e", payload: []byte("Hello\n")}
	var err error
	s.issuerPub, s.issuerPri, err = ed25519.GenerateKey(nil)
	require.NoError(t, err)
	s.serverPri = s.mintServerToken(t, s.issuerPri)
	return s
}

// mintServerToken issues a server token through a fresh chain issuer
// signed by orgIssuer, returning the server's private key.
func (s *signedSubmission) mintServerToken(t *testing.T, orgIssuer ed25519.PrivateKey) ed25519.PrivateKey {
	t.Helper()
	provPub, provPri, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	prov, err := tokens.NewClientIDClaims("provisioner_signer", nil, "choria", nil, "", "", time.Hour, &tokens.ClientPermissions{ServerProvisioner: true}, provPub)
	require.NoError(t, err)
	require.NoError(t, prov.AddOrgIssuerData(orgIssuer))

	srvPub, srvPri, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	srv, err := tokens.NewServerClaims(s.identity, []string{"choria"}, "choria", &tokens.ServerPermissions{Submission: true, Streams: true}, nil, srvPub, "", time.Hour)
	require.NoError(t, err)
	require.NoError(t, srv.AddChainIssuerData(prov, provPri))
	s.token, err = tokens.SignToken(srv, provPri)
	require.NoError(t, err)
	return srvPri
}

func (s *signedSubmission) json(t *testing.T) []byte {
	t.Helper()
	over := s.signOver
	if over == nil {
		over = s.payload
	}
	sig := ed25519.Sign(s.serverPri, over)
	hdrs := fmt.Sprintf("NATS/1.0\r\nChoria-Created: 1670931170230399340\r\nChoria-Identity: %s\r\nChoria-Priority: 4\r\nChoria-Reliable: 1\r\nChoria-Sender: user 0\r\nChoria-Signature: %s\r\nChoria-Token: %s\r\nNats-Msg-Id: %s\r\n\r\n",
		s.identity, hex.EncodeToString(sig), s.token, s.msgID)
	b, err := json.Marshal(map[string]any{
		"subject": "choria.submission.in.hello.signed", "seq": 2,
		"hdrs": []byte(hdrs), "data": s.payload, "time": "2022-12-13T11:32:50.831156999Z",
	})
	require.NoError(t, err)
	return b
}

func TestVerifySubmission(t *testing.T) {
	s := newSignedSubmission(t)
	issuer := hex.EncodeToString(s.issuerPub)
	require.NoError(t, VerifySubmission(s.json(t), issuer, s.msgID, s.identity))

	t.Run("the payload alone is signed", func(t *testing.T) {
		s := newSignedSubmission(t)
		s.signOver = append([]byte("choria.submission.in.hello.signed"), s.payload...)
		err := VerifySubmission(s.json(t), hex.EncodeToString(s.issuerPub), s.msgID, s.identity)
		assert.ErrorContains(t, err, "is not the token key's signature")
	})
	t.Run("a tampered payload fails", func(t *testing.T) {
		b := s.json(t)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		m["data"] = base64.StdEncoding.EncodeToString([]byte("Hellp\n"))
		b, _ = json.Marshal(m)
		assert.ErrorContains(t, VerifySubmission(b, issuer, s.msgID, s.identity), "is not the token key's signature")
	})
	t.Run("another organisation's token fails", func(t *testing.T) {
		other := newSignedSubmission(t)
		err := VerifySubmission(other.json(t), issuer, other.msgID, other.identity)
		assert.ErrorContains(t, err, "does not verify against the organisation issuer")
	})
	t.Run("a key the token does not hold fails", func(t *testing.T) {
		s := newSignedSubmission(t)
		_, s.serverPri, _ = ed25519.GenerateKey(nil)
		assert.ErrorContains(t, VerifySubmission(s.json(t), hex.EncodeToString(s.issuerPub), s.msgID, s.identity), "is not the token key's signature")
	})
	t.Run("a token issued to another server fails", func(t *testing.T) {
		s := newSignedSubmission(t)
		err := VerifySubmission(s.json(t), hex.EncodeToString(s.issuerPub), s.msgID, "server2.choria.local")
		assert.ErrorContains(t, err, `Choria-Identity is "server1.choria.local", want "server2.choria.local"`)
	})
	t.Run("the message id must match", func(t *testing.T) {
		assert.ErrorContains(t, VerifySubmission(s.json(t), issuer, "other", s.identity), "Nats-Msg-Id")
	})
	t.Run("unsigned messages fail", func(t *testing.T) {
		b, err := json.Marshal(map[string]any{"hdrs": []byte("NATS/1.0\r\nNats-Msg-Id: x\r\nChoria-Identity: server1.choria.local\r\n\r\n"), "data": []byte("Hello\n")})
		require.NoError(t, err)
		assert.ErrorContains(t, VerifySubmission(b, issuer, "x", "server1.choria.local"), "lacks Choria-Token or Choria-Signature")
	})
	t.Run("a bad issuer key is reported", func(t *testing.T) {
		assert.ErrorContains(t, VerifySubmission(s.json(t), "abc", s.msgID, s.identity), "not a hex ed25519 key")
	})
}

func tarOf(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}))
	for name, body := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestVerifyGoPackage(t *testing.T) {
	testenv.RequireTool(t, "go")
	v := CodeVerifier{TempDir: t.TempDir()}
	ctx := context.Background()
	params := func(pkg string) map[string]string {
		return map[string]string{"kind": VerifyGoPackage, "require": "github.com/choria-io/go-choria v0.30.2", "package": pkg}
	}
	// a package using go-choria as the generated clients do
	good := tarOf(t, map[string]string{
		"./ddl.go": "package requestsclient\n\nimport \"github.com/choria-io/go-choria/protocol\"\n\n// Filter is an empty filter.\nfunc Filter() *protocol.Filter { return protocol.NewFilter() }\n",
		"./doc.go": "// Package requestsclient is a test.\npackage requestsclient\n",
	})
	require.NoError(t, v.Verify(ctx, params("requestsclient"), good+"\n"))
	assert.ErrorContains(t, v.Verify(ctx, params("other"), good), `the generated package is "requestsclient", want "other"`)

	broken := tarOf(t, map[string]string{"./ddl.go": "package requestsclient\n\nfunc F() int { return \"x\" }\n"})
	err := v.Verify(ctx, params("requestsclient"), broken)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "go build ./generated")
	assert.Contains(t, err.Error(), "cannot use \"x\"")

	assert.ErrorContains(t, v.Verify(ctx, params("requestsclient"), tarOf(t, map[string]string{"./README": "x"})), "no Go files")
	assert.ErrorContains(t, v.Verify(ctx, params("requestsclient"), tarOf(t, map[string]string{"../evil.go": "package x"})), "outside its directory")
	assert.ErrorContains(t, v.Verify(ctx, params("requestsclient"), "INFO[0000] Writing requests/client.go"), "not a base64 tar")
	assert.ErrorContains(t, v.Verify(ctx, map[string]string{"kind": "magic"}, ""), `unknown verify kind "magic"`)
}
