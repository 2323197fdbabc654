package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/controller/identity"
	proxyidentity "github.com/skeinmesh/skein/internal/proxy/identity"
)

func newIdentityCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Workload identities: trust material, join tokens, proxies' certificates",
		// TODO: `skein identity WORKLOAD` for a workload of a local mesh
		// (`skein up`), once the mesh can find a workload's admin address.
	}
	cmd.AddCommand(newIdentityGenerateCommand(), newIdentityIssuerCommand(), newIdentityShowCommand(), newIdentityTokenCommand(),
		newIdentityRotateCommand())
	return cmd
}

// generatedFiles is the JSON of `skein identity generate -o json`.
type generatedFiles struct {
	TrustAnchor       string    `json:"trust_anchor"`
	IssuerCertificate string    `json:"issuer_certificate"`
	IssuerKey         string    `json:"issuer_key"`
	JoinTokenKey      string    `json:"join_token_key,omitempty"`
	AnchorExpires     time.Time `json:"anchor_expires"`
	IssuerExpires     time.Time `json:"issuer_expires"`
}

func newIdentityGenerateCommand() *cobra.Command {
	var trustDomain, dir, output *string
	cfg := identity.GenerateConfig{}
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Make a new mesh's trust anchor, issuer and join-token key",
		Long: `Writes, in the --out directory:
  ca.crt          the trust anchor (self-signed root)
  tls.crt         the issuer certificate, signed by the anchor
  tls.key         the issuer's private key (0600)
  join-token.key  the key that signs join tokens (0600)
The layout is cert-manager's, so the directory can become a Secret as is.
Existing files are kept unless --force is given.

JSON fields (-o json): trust_anchor, issuer_certificate, issuer_key,
join_token_key (paths), anchor_expires, issuer_expires (RFC 3339).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			td, err := spiffeid.TrustDomainFromString(*trustDomain)
			if err != nil {
				return fmt.Errorf("--trust-domain %q: %w", *trustDomain, err)
			}
			cfg.TrustDomain, cfg.Dir = td, *dir
			out, err := identity.Generate(cfg)
			if err != nil {
				return err
			}
			files := generatedFiles{out.TrustAnchor, out.IssuerCert, out.IssuerKey, out.JoinTokenKey, out.AnchorExpires.UTC(), out.IssuerExpires.UTC()}
			return printOutput(cmd.OutOrStdout(), *output, files, func(w io.Writer) {
				fmt.Fprintf(w, "FILE\tWHAT\tEXPIRES\n")
				fmt.Fprintf(w, "%s\ttrust anchor\t%s\n", files.TrustAnchor, files.AnchorExpires.Format(time.RFC3339))
				fmt.Fprintf(w, "%s\tissuer certificate\t%s\n", files.IssuerCertificate, files.IssuerExpires.Format(time.RFC3339))
				fmt.Fprintf(w, "%s\tissuer key\t-\n", files.IssuerKey)
				fmt.Fprintf(w, "%s\tjoin-token key\t-\n", files.JoinTokenKey)
			})
		},
	}
	trustDomain = cmd.Flags().String("trust-domain", "cluster.local", "trust domain of the mesh's SPIFFE IDs")
	dir = cmd.Flags().String("out", "", "directory to write the files to (required)")
	cmd.Flags().DurationVar(&cfg.AnchorTTL, "anchor-ttl", identity.DefaultAnchorTTL, "lifetime of the trust anchor")
	cmd.Flags().DurationVar(&cfg.IssuerTTL, "issuer-ttl", identity.DefaultIssuerTTL, "lifetime of the issuer (cut to the anchor's)")
	cmd.Flags().BoolVar(&cfg.Force, "force", false, "overwrite existing files")
	cmd.Flags().StringVar(&cfg.AnchorKey, "anchor-key", "", "also write the trust anchor's private key here, to make later issuers under it (keep it offline)")
	output = addOutputFlag(cmd)
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newIdentityIssuerCommand() *cobra.Command {
	var output *string
	cfg := identity.RotateConfig{}
	cmd := &cobra.Command{
		Use:   "issuer",
		Short: "Make a new issuer under the existing trust anchor",
		Long: `Writes a new issuer (tls.crt, tls.key) and the anchor (ca.crt) into the
--out directory. A controller serving that directory picks the new issuer up
without a restart; certificates it issued before stay valid, since they
chain to the same anchor.

JSON fields (-o json): trust_anchor, issuer_certificate, issuer_key (paths),
anchor_expires, issuer_expires (RFC 3339).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := identity.RotateIssuer(cfg)
			if err != nil {
				return err
			}
			files := generatedFiles{TrustAnchor: out.TrustAnchor, IssuerCertificate: out.IssuerCert, IssuerKey: out.IssuerKey,
				AnchorExpires: out.AnchorExpires.UTC(), IssuerExpires: out.IssuerExpires.UTC()}
			return printOutput(cmd.OutOrStdout(), *output, files, func(w io.Writer) {
				fmt.Fprintf(w, "FILE\tWHAT\tEXPIRES\n")
				fmt.Fprintf(w, "%s\tissuer certificate\t%s\n", files.IssuerCertificate, files.IssuerExpires.Format(time.RFC3339))
				fmt.Fprintf(w, "%s\tissuer key\t-\n", files.IssuerKey)
			})
		},
	}
	cmd.Flags().StringVar(&cfg.AnchorCert, "anchor-cert", "", "the trust anchor's certificate, ca.crt (required)")
	cmd.Flags().StringVar(&cfg.AnchorKey, "anchor-key", "", "the trust anchor's private key, as written by generate --anchor-key (required)")
	cmd.Flags().StringVar(&cfg.Dir, "out", "", "the controller's issuer directory (required)")
	cmd.Flags().DurationVar(&cfg.IssuerTTL, "issuer-ttl", identity.DefaultIssuerTTL, "lifetime of the issuer (cut to the anchor's)")
	output = addOutputFlag(cmd)
	for _, f := range []string{"anchor-cert", "anchor-key", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newIdentityShowCommand() *cobra.Command {
	var admin, output *string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the certificate a proxy holds, from its admin server",
		Long: `Fetches /identity from a proxy's admin server. The proxy answers it only to
loopback clients: run this inside the pod (or its network namespace).

JSON fields (-o json): identity (SPIFFE ID), issuer (issuer's subject),
not_before, not_after (RFC 3339), serial (hexadecimal).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			status, err := fetchIdentity(cmd.Context(), *admin)
			if err != nil {
				return err
			}
			return printOutput(cmd.OutOrStdout(), *output, status, func(w io.Writer) {
				fmt.Fprintf(w, "IDENTITY\t%s\n", status.Identity)
				fmt.Fprintf(w, "ISSUER\t%s\n", status.Issuer)
				fmt.Fprintf(w, "NOT BEFORE\t%s\n", status.NotBefore.Format(time.RFC3339))
				fmt.Fprintf(w, "NOT AFTER\t%s (in %s)\n", status.NotAfter.Format(time.RFC3339), time.Until(status.NotAfter).Round(time.Second))
				fmt.Fprintf(w, "SERIAL\t%s\n", status.Serial)
			})
		},
	}
	admin = cmd.Flags().String("admin", "127.0.0.1:4191", "address of the proxy's admin server")
	output = addOutputFlag(cmd)
	return cmd
}

func fetchIdentity(ctx context.Context, admin string) (proxyidentity.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := "http://" + admin + "/identity"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return proxyidentity.Status{}, fmt.Errorf("--admin %q: %w", admin, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return proxyidentity.Status{}, fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return proxyidentity.Status{}, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	var status proxyidentity.Status
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		return proxyidentity.Status{}, fmt.Errorf("decoding %s: %w", url, err)
	}
	return status, nil
}

// joinToken is the JSON of `skein identity token -o json`.
type joinToken struct {
	Identity string    `json:"identity"`
	ID       string    `json:"id"`
	OneShot  bool      `json:"one_shot"`
	Token    string    `json:"token"`
	Expires  time.Time `json:"expires"`
}

func newIdentityTokenCommand() *cobra.Command {
	var keyFile, id, audience, output *string
	var ttl *time.Duration
	var oneShot *bool
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print a join token that proves an identity to the identity service",
		Long: `Signs a join token for a workload outside Kubernetes. Put it in the file the
proxy's token file setting names. Every token has an ID (its jti). The
controller refuses tokens that live longer than its -join-token-max-lifetime
(default 24h). A --one-shot token is accepted once (per controller replica):
it gives one certificate, which the proxy cannot renew with the same token.

JSON fields (-o json): identity, id, one_shot, token, expires (RFC 3339).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spiffeID, err := spiffeid.FromString(*id)
			if err != nil {
				return fmt.Errorf("--identity %q: %w", *id, err)
			}
			key, err := identity.LoadJoinTokenKey(*keyFile)
			if err != nil {
				return err
			}
			expires := time.Now().Add(*ttl).UTC().Truncate(time.Second)
			token, tokenID, err := identity.JoinToken{Identity: spiffeID, Audience: *audience, TTL: *ttl, OneShot: *oneShot}.Mint(key)
			if err != nil {
				return err
			}
			return printOutput(cmd.OutOrStdout(), *output, joinToken{spiffeID.String(), tokenID, *oneShot, token, expires}, func(w io.Writer) {
				fmt.Fprintln(w, token)
			})
		},
	}
	keyFile = cmd.Flags().String("key", "", "join-token signing key (join-token.key) (required)")
	id = cmd.Flags().String("identity", "", "SPIFFE ID the token proves, spiffe://<trust-domain>/ns/<ns>/sa/<sa> (required)")
	audience = cmd.Flags().String("audience", identity.Audience, "audience the token is bound to")
	ttl = cmd.Flags().Duration("ttl", time.Hour, "how long the token is valid (the controller accepts at most its -join-token-max-lifetime, default 24h)")
	oneShot = cmd.Flags().Bool("one-shot", false, "the controller accepts the token once")
	output = addOutputFlag(cmd)
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("identity")
	return cmd
}
