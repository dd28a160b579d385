package bootstrap

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"path"

	"github.com/choria-io/tokens"

	"github.com/reproducible-choria/deployment/internal/duration"
	"github.com/reproducible-choria/deployment/topology"
)

// Directories of the output, one per role, each holding only that role's files.
// issuer and operator are never deployed to a host: they hold the
// organisation's signing key and the generated passwords for the operator.
const (
	DirIssuer      = "issuer"
	DirOperator    = "operator"
	DirBroker      = topology.RoleBroker
	DirAAA         = topology.RoleAAA
	DirProvisioner = topology.RoleProvisioner
	DirReplicator  = topology.RoleReplicator
	DirClient      = topology.RoleClient
	DirServer      = topology.RoleServer
)

// Dirs lists the output directories, in the order they are filled.
func Dirs() []string {
	return []string{DirIssuer, DirOperator, DirClient, DirBroker, DirAAA, DirProvisioner, DirReplicator, DirServer}
}

// Files of the output, relative to it; other packages reach those they
// read through Output.
const (
	fileIssuerSeed           = "issuer/issuer.seed"
	fileIssuerPublic         = "issuer/issuer.public"
	fileProvisioningToken    = "operator/provisioning-token"
	fileProvisioningPassword = "operator/provisioning-password"
	fileSystemPassword       = "operator/system-password"
	filePluginSignerSeed     = "client/plugin-signer.seed"
	fileClientConfig         = "client/client.conf"
	fileProvisioningJWT      = "server/provisioning.jwt"
	fileBrokerConfig         = "broker/broker.conf"
	fileProvisionerConfig    = "provisioner/provisioner.yaml"
	fileProvisionerChoria    = "provisioner/choria.cfg"
	fileHelperConfig         = "provisioner/helper.json"
	fileAAAConfig            = "aaa/aaa.conf"
	fileReplicatorConfig     = "replicator/sr.yaml"
)

// userPasswordFile is where a user's login password is kept, relative to the output.
func userPasswordFile(user string) string { return "operator/user-" + user + ".password" }

func policyFile(user string) string { return user + ".rego" }

// Identities of the non-server credentials, as the reference names them.
const (
	provisionerIdentity   = "provisioner_signer"
	chainSignerIdentity   = "aaa_chain_delegator"
	requestSignerIdentity = "aaa_request_signer"
	replicatorIdentity    = "stream_replicator"
)

// Demo values from the reference README, for people following it word for word.
const (
	demoProvisioningToken = "s3cret"
	demoBrokerPassword    = "s3cret"
	demoSystemPassword    = "system"
	demoUserPassword      = "secret"
)

type kind int

const (
	kindSeed kind = iota
	kindPublic
	kindToken
	kindTLSKey
	kindTLSCert
	kindSecret
	kindConfig
)

// artefact is one output file: how to make it, what it is made from, and how
// to tell that an existing copy is intact.
type artefact struct {
	path  string
	kind  kind
	deps  []string
	make  func(*state) ([]byte, error)
	check func(*state, []byte) error
}

func (a artefact) dir() string { return path.Dir(a.path) }

// mode keeps seeds, keys, tokens, secrets and configs (which embed passwords) private.
func (a artefact) mode() uint32 {
	if a.kind == kindPublic || a.kind == kindTLSCert {
		return 0o644
	}
	return 0o600
}

func seedArtefact(p string) artefact {
	return artefact{path: p, kind: kindSeed, make: func(*state) ([]byte, error) { return newSeed() },
		check: func(_ *state, b []byte) error { _, err := parseSeed(b); return err }}
}

func publicArtefact(p, seed string) artefact {
	return artefact{path: p, kind: kindPublic, deps: []string{seed},
		make:  func(s *state) ([]byte, error) { return []byte(s.publicOf(seed)), nil },
		check: func(s *state, b []byte) error { return checkPublicFile(b, s.seed(seed)) }}
}

func secretArtefact(p, demo string, demoMode bool) artefact {
	return artefact{path: p, kind: kindSecret, make: func(*state) ([]byte, error) {
		if demoMode {
			return []byte(demo), nil
		}
		return newPassword()
	}, check: func(_ *state, b []byte) error {
		if len(b) == 0 {
			return fmt.Errorf("is empty")
		}
		return nil
	}}
}

func configArtefact(p string, render func(*state) ([]byte, error), deps ...string) artefact {
	return artefact{path: p, kind: kindConfig, deps: deps, make: render, check: func(_ *state, b []byte) error {
		if len(b) == 0 {
			return fmt.Errorf("is empty")
		}
		return nil
	}}
}

func clientTokenArtefact(p, seed, caller string, perms tokens.ClientPermissions, pub, sub []string, chain bool) artefact {
	return artefact{path: p, kind: kindToken, deps: []string{seed, fileIssuerSeed},
		make: func(s *state) ([]byte, error) {
			pp := perms
			return signClientToken(s.seed(fileIssuerSeed), s.seed(seed), caller, s.topo.Organisation, &pp, pub, sub, chain, s.topo.Validity.Signers.Duration)
		},
		check: func(s *state, b []byte) error { return checkClientToken(b, s.seed(fileIssuerSeed), s.seed(seed)) }}
}

func serverTokenArtefact(p, seed string, identity func(*state) string, perms tokens.ServerPermissions, pub []string, validity func(*state) duration.Duration) artefact {
	return artefact{path: p, kind: kindToken, deps: []string{seed, fileIssuerSeed},
		make: func(s *state) ([]byte, error) {
			pp := perms
			return signServerToken(s.seed(fileIssuerSeed), s.seed(seed), identity(s), []string{s.topo.Collective}, s.topo.Organisation, &pp, pub, validity(s).Duration)
		},
		check: func(s *state, b []byte) error { return checkServerToken(b, s.seed(fileIssuerSeed), s.seed(seed)) }}
}

func tlsArtefacts(dir, role string) []artefact {
	key, cert := dir+"/tls.key", dir+"/tls.crt"
	fqdn := func(s *state) string { return s.topo.FQDN(s.topo.MustHost(role).Name) }
	return []artefact{
		{path: key, kind: kindTLSKey, make: func(*state) ([]byte, error) { return newTLSKey() },
			check: func(_ *state, b []byte) error { _, err := parseTLSKey(b); return err }},
		{path: cert, kind: kindTLSCert, deps: []string{key},
			make: func(s *state) ([]byte, error) {
				h := s.topo.MustHost(role)
				var addrs []netip.Addr
				for _, n := range h.SortedNetworks() {
					addrs = append(addrs, h.Addresses[n])
				}
				return selfSignedCert(s.tlsKey(key), fqdn(s), addrs, s.topo.Validity.TLSCertificate.Duration)
			},
			check: func(s *state, b []byte) error { return checkCert(b, s.tlsKey(key), fqdn(s)) }},
	}
}

// artefacts lists every output file in dependency order: a file comes after
// everything it is made from.
func artefacts(t *topology.Topology, demo bool) []artefact {
	hostIdentity := func(role string) func(*state) string {
		return func(s *state) string { return s.topo.FQDN(s.topo.MustHost(role).Name) }
	}
	validity := func(f func(topology.Validity) duration.Duration) func(*state) duration.Duration {
		return func(s *state) duration.Duration { return f(s.topo.Validity) }
	}

	as := []artefact{
		seedArtefact(fileIssuerSeed),
		publicArtefact(fileIssuerPublic, fileIssuerSeed),
		secretArtefact(fileProvisioningToken, demoProvisioningToken, demo),
		secretArtefact(fileProvisioningPassword, demoBrokerPassword, demo),
		secretArtefact(fileSystemPassword, demoSystemPassword, demo),
	}
	var userFiles []string
	for _, u := range t.Users {
		as = append(as, secretArtefact(userPasswordFile(u.Name), demoUserPassword, demo))
		userFiles = append(userFiles, userPasswordFile(u.Name))
	}

	// client: configuration plus the plugin signer the operator packs manifests with
	as = append(as,
		seedArtefact(filePluginSignerSeed),
		publicArtefact("client/plugin-signer.public", filePluginSignerSeed),
		configArtefact(fileClientConfig, (*state).renderClient, fileSystemPassword),
	)

	// broker
	as = append(as, seedArtefact("broker/broker.seed"),
		serverTokenArtefact("broker/broker.jwt", "broker/broker.seed", hostIdentity(topology.RoleBroker),
			tokens.ServerPermissions{}, []string{"choria.node_metadata.>"}, validity(func(v topology.Validity) duration.Duration { return v.BrokerToken })))
	as = append(as, tlsArtefacts(DirBroker, topology.RoleBroker)...)
	as = append(as, configArtefact(fileBrokerConfig, (*state).renderBroker, fileIssuerSeed, fileSystemPassword, fileProvisioningPassword))

	// AAA: chain signer issues user logins, request signer signs requests on
	// behalf of users, the signing service answers over Choria Services.
	as = append(as,
		seedArtefact("aaa/chain-signer.seed"),
		publicArtefact("aaa/chain-signer.public", "aaa/chain-signer.seed"),
		clientTokenArtefact("aaa/chain-signer.jwt", "aaa/chain-signer.seed", chainSignerIdentity, tokens.ClientPermissions{}, nil, nil, true),
		seedArtefact("aaa/request-signer.seed"),
		clientTokenArtefact("aaa/request-signer.jwt", "aaa/request-signer.seed", requestSignerIdentity, tokens.ClientPermissions{AuthenticationDelegator: true}, nil, nil, false),
		seedArtefact("aaa/signer-service.seed"),
		serverTokenArtefact("aaa/signer-service.jwt", "aaa/signer-service.seed", hostIdentity(topology.RoleAAA),
			tokens.ServerPermissions{ServiceHost: true}, nil, validity(func(v topology.Validity) duration.Duration { return v.Signers })),
	)
	as = append(as, tlsArtefacts(DirAAA, topology.RoleAAA)...)
	as = append(as, configArtefact("aaa/aaa-choria.conf", (*state).renderAAAChoria))
	for _, u := range t.Users {
		if u.OPAPolicy == "" {
			continue
		}
		policy := u.OPAPolicy
		as = append(as, configArtefact("aaa/"+policyFile(u.Name), func(*state) ([]byte, error) { return []byte(policy), nil }))
	}
	as = append(as, configArtefact(fileAAAConfig, (*state).renderAAA, userFiles...))

	// provisioner
	as = append(as,
		seedArtefact("provisioner/signer.seed"),
		clientTokenArtefact("provisioner/signer.jwt", "provisioner/signer.seed", provisionerIdentity,
			tokens.ClientPermissions{ServerProvisioner: true, FleetManagement: true}, nil, nil, true),
		configArtefact(fileProvisionerConfig, (*state).renderProvisioner, fileIssuerSeed, fileProvisioningToken, fileProvisioningPassword),
		configArtefact(fileProvisionerChoria, (*state).renderProvisionerChoria),
		configArtefact(fileHelperConfig, (*state).renderHelper, fileIssuerSeed, filePluginSignerSeed),
	)

	// stream replicator
	as = append(as,
		seedArtefact("replicator/choria.seed"),
		clientTokenArtefact("replicator/choria.jwt", "replicator/choria.seed", replicatorIdentity,
			tokens.ClientPermissions{StreamsUser: true},
			[]string{"choria.stream-replicator.sync.>", "choria.node_advisories.>", t.Streams.MonitorSubject},
			[]string{"choria.stream-replicator.sync.>"}, false),
		configArtefact(fileReplicatorConfig, (*state).renderReplicator),
	)

	// servers start with nothing but this
	as = append(as, artefact{path: fileProvisioningJWT, kind: kindToken, deps: []string{fileIssuerSeed, fileProvisioningToken},
		make:  (*state).provisioningToken,
		check: func(s *state, b []byte) error { return checkProvisioningToken(b, s.seed(fileIssuerSeed)) }})
	return as
}

func (s *state) provisioningToken() ([]byte, error) {
	claims, err := tokens.NewProvisioningClaims(false, true, s.text(fileProvisioningToken), "", "", []string{s.topo.BrokerURL()}, "", "", "", s.topo.Organisation, "", s.topo.Validity.ProvisioningToken.Duration)
	if err != nil {
		return nil, fmt.Errorf("provisioning claims: %w", err)
	}
	claims.ProtoV2 = true
	claims.AllowUpdate = true
	tok, err := tokens.SignToken(claims, s.seed(fileIssuerSeed))
	if err != nil {
		return nil, fmt.Errorf("signing provisioning token: %w", err)
	}
	return []byte(tok), nil
}

func checkProvisioningToken(b []byte, issuer ed25519.PrivateKey) error {
	if _, err := tokens.ParseProvisioningToken(string(b), issuer.Public()); err != nil {
		return fmt.Errorf("is not a provisioning token signed by the issuer: %w", err)
	}
	return nil
}
