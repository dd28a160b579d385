package bootstrap

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"time"

	"github.com/choria-io/tokens"
)

// Seeds are stored as Choria's CLI stores them: the 32-byte ed25519 seed, hex
// encoded, with no trailing newline (the token library checks the length).

func newSeed() ([]byte, error) {
	_, pri, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ed25519 key: %w", err)
	}
	return []byte(hex.EncodeToString(pri.Seed())), nil
}

func parseSeed(b []byte) (ed25519.PrivateKey, error) {
	if len(b) != 2*ed25519.SeedSize {
		return nil, fmt.Errorf("is not a hex encoded ed25519 seed (%d bytes, want %d)", len(b), 2*ed25519.SeedSize)
	}
	seed, err := hex.DecodeString(string(b))
	if err != nil {
		return nil, fmt.Errorf("is not a hex encoded ed25519 seed: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func publicHex(pri ed25519.PrivateKey) string {
	return hex.EncodeToString(pri.Public().(ed25519.PublicKey))
}

func checkPublicFile(b []byte, seed ed25519.PrivateKey) error {
	if string(b) != publicHex(seed) {
		return fmt.Errorf("does not hold the public key of its seed")
	}
	return nil
}

// signClientToken issues a client JWT the way `choria jwt client` does; chain
// adds the organisation issuer's trust signature (`--issuer`).
func signClientToken(issuer ed25519.PrivateKey, subject ed25519.PrivateKey, caller, org string, perms *tokens.ClientPermissions, pub, sub []string, chain bool, validity time.Duration) ([]byte, error) {
	claims, err := tokens.NewClientIDClaims(caller, nil, org, nil, "", "", validity, perms, subject.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("client claims for %s: %w", caller, err)
	}
	claims.AdditionalPublishSubjects = pub
	claims.AdditionalSubscribeSubjects = sub
	if chain {
		if err := claims.AddOrgIssuerData(issuer); err != nil {
			return nil, fmt.Errorf("chain data for %s: %w", caller, err)
		}
	}
	tok, err := tokens.SignToken(claims, issuer)
	if err != nil {
		return nil, fmt.Errorf("signing client token for %s: %w", caller, err)
	}
	return []byte(tok), nil
}

// signServerToken issues a server JWT the way `choria jwt server` does.
func signServerToken(issuer, subject ed25519.PrivateKey, identity string, collectives []string, org string, perms *tokens.ServerPermissions, pub []string, validity time.Duration) ([]byte, error) {
	claims, err := tokens.NewServerClaims(identity, collectives, org, perms, pub, subject.Public().(ed25519.PublicKey), "", validity)
	if err != nil {
		return nil, fmt.Errorf("server claims for %s: %w", identity, err)
	}
	tok, err := tokens.SignToken(claims, issuer)
	if err != nil {
		return nil, fmt.Errorf("signing server token for %s: %w", identity, err)
	}
	return []byte(tok), nil
}

// checkClientToken verifies a stored client JWT against the issuer and its seed.
func checkClientToken(b []byte, issuer, subject ed25519.PrivateKey) error {
	claims, err := tokens.ParseClientIDToken(string(b), issuer.Public(), true)
	if err != nil {
		return fmt.Errorf("is not a client token signed by the issuer: %w", err)
	}
	if claims.PublicKey != publicHex(subject) {
		return fmt.Errorf("was not issued for the key beside it")
	}
	return nil
}

func checkServerToken(b []byte, issuer, subject ed25519.PrivateKey) error {
	claims, err := tokens.ParseServerToken(string(b), issuer.Public())
	if err != nil {
		return fmt.Errorf("is not a server token signed by the issuer: %w", err)
	}
	if claims.PublicKey != publicHex(subject) {
		return fmt.Errorf("was not issued for the key beside it")
	}
	return nil
}

// newTLSKey makes an ECDSA P-256 key: as good as the reference's RSA for a
// self-signed endpoint and fast to generate.
func newTLSKey() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating TLS key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding TLS key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseTLSKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("is not a PEM encoded private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("is not a valid private key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("is not an ECDSA key")
	}
	return ek, nil
}

// selfSignedCert makes a certificate for the host's FQDN and addresses.
func selfSignedCert(key *ecdsa.PrivateKey, fqdn string, addrs []netip.Addr, validity time.Duration) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fqdn},
		DNSNames:              []string{fqdn, strings.SplitN(fqdn, ".", 2)[0]},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, a := range addrs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate for %s: %w", fqdn, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func checkCert(b []byte, key *ecdsa.PrivateKey, fqdn string) error {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return fmt.Errorf("is not a PEM encoded certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("is not a valid certificate: %w", err)
	}
	if !key.PublicKey.Equal(c.PublicKey) {
		return fmt.Errorf("does not match the TLS key beside it")
	}
	if err := c.VerifyHostname(fqdn); err != nil {
		return fmt.Errorf("is not valid for %s: %w", fqdn, err)
	}
	return nil
}

// newPassword returns 24 random characters from an unambiguous alphabet.
func newPassword() ([]byte, error) {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	out := make([]byte, 24)
	for i := range out {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return nil, fmt.Errorf("generating password: %w", err)
		}
		out[i] = alphabet[n.Int64()]
	}
	return out, nil
}
