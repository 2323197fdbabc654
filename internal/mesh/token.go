package mesh

import (
	"crypto/ecdsa"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/atomicfile"
	"github.com/skeinmesh/skein/internal/controller/identity"
)

// tokenTTL is the life of the join tokens the mesh hands its proxies; they
// are re-minted well before (see refreshTokens). The controller refuses
// join tokens that live longer than identity.DefaultJoinTokenMaxLifetime.
const tokenTTL = identity.DefaultJoinTokenMaxLifetime

// joinKey signs the join tokens proving each replica's identity.
type joinKey struct {
	key *ecdsa.PrivateKey
	td  spiffeid.TrustDomain
}

func identityTrustDomain(name string) (spiffeid.TrustDomain, error) {
	return spiffeid.TrustDomainFromString(name)
}

func loadJoinKey(path, trustDomain string) (joinKey, error) {
	td, err := identityTrustDomain(trustDomain)
	if err != nil {
		return joinKey{}, err
	}
	key, err := identity.LoadJoinTokenKey(path)
	if err != nil {
		return joinKey{}, err
	}
	return joinKey{key: key, td: td}, nil
}

// writeToken mints a join token for the replica's identity into a file only
// its proxy's uid can read (not its application, not other workloads'
// proxies), and returns the file's path.
func (m *Mesh) writeToken(in *instance) (string, error) {
	id, err := spiffeid.FromString(m.identity(in.spec))
	if err != nil {
		return "", err
	}
	token, err := identity.MintJoinToken(m.joinKey.key, id, identity.Audience, tokenTTL)
	if err != nil {
		return "", fmt.Errorf("minting a join token for %s: %w", id, err)
	}
	path := m.path(tokensDir, in.host.Name+".token")
	if err := atomicfile.WriteOwned(path, []byte(token), 0o400, in.users.proxy.UID, in.users.proxy.GID); err != nil {
		return "", err
	}
	return path, nil
}
