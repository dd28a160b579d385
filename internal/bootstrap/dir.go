package bootstrap

import (
	"fmt"
	"os"
	"path/filepath"
)

// Output is a bootstrapper's output directory. Its methods name the files
// other packages read there, so no one else joins their paths.
type Output struct{ Dir string }

func (o Output) file(rel string) string { return filepath.Join(o.Dir, filepath.FromSlash(rel)) }

// Role is the directory of one role's files (DirClient, DirAAA, …, or a
// broker's BrokerDir).
func (o Output) Role(dir string) string { return o.file(dir) }

// IssuerPublic is the organisation issuer's public key, hex encoded.
func (o Output) IssuerPublic() string { return o.file(fileIssuerPublic) }

// ProvisioningToken is the token servers present to the provisioner.
func (o Output) ProvisioningToken() string { return o.file(fileProvisioningToken) }

// ProvisioningJWT is the unprovisioned server's provisioning.jwt.
func (o Output) ProvisioningJWT() string { return o.file(fileProvisioningJWT) }

// PluginSignerSeed is the key that signs plugin manifests.
func (o Output) PluginSignerSeed() string { return o.file(filePluginSignerSeed) }

// UserPasswordFile is where a user's login password is kept.
func (o Output) UserPasswordFile(user string) string { return o.file(userPasswordFile(user)) }

// UserPassword reads a user's login password.
func (o Output) UserPassword(user string) (string, error) {
	b, err := os.ReadFile(o.UserPasswordFile(user))
	if err != nil {
		return "", fmt.Errorf("reading the password of %s: %w", user, err)
	}
	return string(b), nil
}

// HelperConfig is the provisioning helper's configuration.
func (o Output) HelperConfig() string { return o.file(fileHelperConfig) }

// ProvisionerConfig is choria-provisioner's provisioner.yaml.
func (o Output) ProvisionerConfig() string { return o.file(fileProvisionerConfig) }
