package provhelper

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Request is the part of the provisioner's helper input (its host.Host JSON)
// the helper needs. The "jwt" member holds the provisioning token and is
// deliberately not decoded, so it never reaches a Go value or a message;
// "csr" and "inventory" are unused.
type Request struct {
	Identity      string         `json:"identity"`
	ED25519PubKey *ED25519PubKey `json:"ed25519_pubkey"`
}

// ED25519PubKey is the server's gen25519 reply as the provisioner forwards it.
type ED25519PubKey struct {
	PublicKey string `json:"public_key"`
	Directory string `json:"directory"`
}

const (
	maxIdentityLen = 253 // DNS name limit
	maxLabelLen    = 63
	maxDirLen      = 1024
)

// Validate checks everything the reply is built from.
func (r *Request) Validate() error {
	if err := validateIdentity(r.Identity); err != nil {
		return err
	}
	if r.ED25519PubKey == nil {
		return errors.New("ed25519_pubkey missing (is the provisioner's ed25519 feature enabled?)")
	}
	if err := validatePublicKey(r.ED25519PubKey.PublicKey); err != nil {
		return err
	}
	return validateDirectory(r.ED25519PubKey.Directory)
}

// validateIdentity accepts RFC 1123 host names. Anything else could break
// the key=value server configuration or the NATS subjects built from it.
func validateIdentity(id string) error {
	if id == "" {
		return errors.New("identity missing")
	}
	if len(id) > maxIdentityLen {
		return fmt.Errorf("identity longer than %d bytes", maxIdentityLen)
	}
	for _, label := range strings.Split(id, ".") {
		if err := validateLabel(label); err != nil {
			return fmt.Errorf("identity %q is not a valid host name: %w", id, err)
		}
	}
	return nil
}

func validateLabel(l string) error {
	if l == "" {
		return errors.New("empty label")
	}
	if len(l) > maxLabelLen {
		return fmt.Errorf("label longer than %d bytes", maxLabelLen)
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return errors.New("label starts or ends with '-'")
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("character %q not allowed", c)
		}
	}
	return nil
}

func validatePublicKey(pk string) error {
	if pk == "" {
		return errors.New("ed25519_pubkey.public_key missing")
	}
	if len(pk) != 64 {
		return fmt.Errorf("ed25519_pubkey.public_key must be 64 hex characters, got %d characters", len(pk))
	}
	if _, err := hex.DecodeString(pk); err != nil {
		return fmt.Errorf("ed25519_pubkey.public_key is not hex: %w", err)
	}
	return nil
}

// validateDirectory wants the clean absolute path the server reports (it
// sends filepath.Abs of its config directory); the token and seed file
// settings are built from it.
func validateDirectory(d string) error {
	if d == "" {
		return errors.New("ed25519_pubkey.directory missing")
	}
	if len(d) > maxDirLen {
		return fmt.Errorf("ed25519_pubkey.directory longer than %d bytes", maxDirLen)
	}
	if err := validateSettingValue(d); err != nil {
		return fmt.Errorf("ed25519_pubkey.directory: %w", err)
	}
	if !filepath.IsAbs(d) {
		return fmt.Errorf("ed25519_pubkey.directory %q is not absolute", d)
	}
	if filepath.Clean(d) != d {
		return fmt.Errorf("ed25519_pubkey.directory %q is not a clean path", d)
	}
	return nil
}
