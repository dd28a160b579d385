package bootstrap

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"path"
	"slices"

	"github.com/choria-io/tokens"

	"github.com/reproducible-choria/deployment/internal/duration"
	"github.com/reproducible-choria/deployment/topology"
)

// Directories of the output, one per role, each holding only that role's
// files, and one per broker (BrokerDir). issuer and operator are never
// deployed to a host: they hold the organisation's signing key and the
// generated passwords for the operator.
const (
	DirIssuer      = "issuer"
	DirOperator    = "operator"
	DirAAA         = topology.RoleAAA
	DirProvisioner = topology.RoleProvisioner
	DirReplicator  = topology.RoleReplicator
	DirClient      = topology.RoleClient
	DirServer      = topology.RoleServer
)

// BrokerDir is the directory of one broker's files: its host name, so the
// default broker's is "broker" and a cluster's others are beside it.
func BrokerDir(host string) string { return host }

// Dirs lists the output directories of a topology, in the order they are
// filled.
func Dirs(t *topology.Topology) []string {
	dirs := []string{DirIssuer, DirOperator, DirClient}
	for _, b := range t.BrokerHosts() {
		dirs = append(dirs, BrokerDir(b.Name))
	}
	return append(dirs, DirAAA, DirProvisioner, DirReplicator, DirServer)
}

// checkBrokerDirs refuses a broker whose directory would be another's.
func checkBrokerDirs(t *topology.Topology) error {
	fixed := []string{DirIssuer, DirOperator, DirClient, DirAAA, DirProvisioner, DirReplicator, DirServer}
	for _, b := range t.BrokerHosts() {
		if slices.Contains(fixed, BrokerDir(b.Name)) {
			return fmt.Errorf("broker %q: its credentials would share the directory %q of the bootstrapper's output; rename the broker", b.Name, BrokerDir(b.Name))
		}
	}
	return nil
}

// Files of the output, relative to it; other packages reach those they
// read through Output.
const (
	fileIssuerSeed           = "issuer/issuer.seed"
	fileIssuerPublic         = "issuer/issuer.public"
	fileProvisioningToken    = "operator/provisioning-token"
	fileProvisioningPassword = "operator/provisioning-password"
	fileSystemPassword       = "operator/system-password"
	fileBrokers              = "operator/brokers"
	filePluginSignerSeed     = "client/plugin-signer.seed"
	fileClientConfig         = "client/client.conf"
	fileProvisioningJWT      = "server/provisioning.jwt"
	fileProvisionerConfig    = "provisioner/provisioner.yaml"
	fileProvisionerChoria    = "provisioner/choria.cfg"
	fileHelperConfig         = "provisioner/helper.json"
	fileAAAConfig            = "aaa/aaa.conf"
	fileReplicatorConfig     = "replicator/sr.yaml"
)

// brokerFile is one of a broker's files, relative to the output.
func brokerFile(host, name string) string { return BrokerDir(host) + "/" + name }

// brokerConfig is a broker's configuration file name in its directory.
const brokerConfig = "broker.conf"

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
	// kindRecord is what the other files were made for (the brokers): not
	// a configuration to render again, nor a source of trust.
	kindRecord
)

// derived tells whether files of the kind hold no trust of their own: when
// one is missing, what was made from it is made again.
func (k kind) derived() bool { return k == kindConfig || k == kindRecord }

// artefact is one output file: how to make it, what it is made from, and how
// to tell that an existing copy is intact.
type artefact struct {
	path  string
	kind  kind
	deps  []string
	make  func(*state) ([]byte, error)
	check func(*state, []byte) error
	// stale, when set, tells whether an intact existing copy no longer
	// matches the topology; it is then made anew, and so is everything
	// made from it.
	stale func(*state, []byte) bool
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

// tlsArtefacts are the TLS key and self-signed certificate in dir of the
// host host returns.
func tlsArtefacts(dir string, host func(*state) topology.Host) []artefact {
	key, cert := dir+"/tls.key", dir+"/tls.crt"
	fqdn := func(s *state) string { return s.topo.FQDN(host(s).Name) }
	return []artefact{
		{path: key, kind: kindTLSKey, make: func(*state) ([]byte, error) { return newTLSKey() },
			check: func(_ *state, b []byte) error { _, err := parseTLSKey(b); return err }},
		{path: cert, kind: kindTLSCert, deps: []string{key},
			make: func(s *state) ([]byte, error) {
				h := host(s)
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
	roleHost := func(role string) func(*state) topology.Host {
		return func(s *state) topology.Host { return s.topo.MustHost(role) }
	}
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
		brokersArtefact(),
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
		configArtefact(fileClientConfig, (*state).renderClient, fileSystemPassword, fileBrokers),
	)

	// brokers, each with its own credentials
	for _, b := range t.BrokerHosts() {
		host := func(*state) topology.Host { return b }
		seed := brokerFile(b.Name, "broker.seed")
		as = append(as, seedArtefact(seed),
			serverTokenArtefact(brokerFile(b.Name, "broker.jwt"), seed, func(s *state) string { return s.topo.FQDN(b.Name) },
				tokens.ServerPermissions{}, []string{"choria.node_metadata.>"}, validity(func(v topology.Validity) duration.Duration { return v.BrokerToken })))
		as = append(as, tlsArtefacts(BrokerDir(b.Name), host)...)
		as = append(as, configArtefact(brokerFile(b.Name, brokerConfig), func(s *state) ([]byte, error) { return s.renderBroker(b) },
			fileIssuerSeed, fileSystemPassword, fileProvisioningPassword, fileBrokers))
	}

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
	as = append(as, tlsArtefacts(DirAAA, roleHost(topology.RoleAAA))...)
	as = append(as, configArtefact("aaa/aaa-choria.conf", (*state).renderAAAChoria, fileBrokers))
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
		configArtefact(fileProvisionerChoria, (*state).renderProvisionerChoria, fileBrokers),
		configArtefact(fileHelperConfig, (*state).renderHelper, fileIssuerSeed, filePluginSignerSeed, fileBrokers),
	)

	// stream replicator
	as = append(as,
		seedArtefact("replicator/choria.seed"),
		clientTokenArtefact("replicator/choria.jwt", "replicator/choria.seed", replicatorIdentity,
			tokens.ClientPermissions{StreamsUser: true},
			[]string{"choria.stream-replicator.sync.>", "choria.node_advisories.>", t.Streams.MonitorSubject},
			[]string{"choria.stream-replicator.sync.>"}, false),
		configArtefact(fileReplicatorConfig, (*state).renderReplicator, fileBrokers),
	)

	// servers start with nothing but this
	as = append(as, artefact{path: fileProvisioningJWT, kind: kindToken, deps: []string{fileIssuerSeed, fileProvisioningToken, fileBrokers},
		make:  (*state).provisioningToken,
		check: func(s *state, b []byte) error { return checkProvisioningToken(b, s.seed(fileIssuerSeed)) }})
	return as
}

// brokersArtefact records the brokers the configurations name: when the
// topology's brokers change (a cluster grows), every file naming them
// follows, and nothing else does. It is a configuration, not a source of
// trust: when missing, the files made from it are rendered again.
func brokersArtefact() artefact {
	return artefact{path: fileBrokers, kind: kindRecord, make: (*state).renderBrokers,
		check: func(*state, []byte) error { return nil },
		stale: func(s *state, b []byte) bool {
			want, err := s.renderBrokers()
			return err != nil || !bytes.Equal(want, b)
		}}
}

func (s *state) provisioningToken() ([]byte, error) {
	claims, err := tokens.NewProvisioningClaims(false, true, s.text(fileProvisioningToken), "", "", s.topo.BrokerURLs(), "", "", "", s.topo.Organisation, "", s.topo.Validity.ProvisioningToken.Duration)
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
