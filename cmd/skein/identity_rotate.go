package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/pki"
)

func newIdentityRotateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the trust anchor, step by step, in the controller's issuer directory",
		Long: `Rotates the mesh's trust anchor without a failed request, in three steps on
the directory the controller serves (-identity-dir, skein up's state/identity):

  skein identity rotate bundle --dir D --new-anchor-cert new.crt --new-anchor-key new.key
      ca.crt holds the old and the new anchor; the controller sends it to
      every proxy at once
  skein identity rotate issue  --dir D --new-anchor-cert new.crt --new-anchor-key new.key
      refused until every proxy trusts the new anchor; then a new issuer
      under it, and proxies renew under it within 10 s
  skein identity rotate drop   --dir D
      refused until every proxy's certificate chains to the new anchor;
      then ca.crt keeps only the new anchor

  skein identity rotate status --dir D   the step, and what the proxies trust

issue, drop and status ask the controller's API (--api, as skein stat) what
its proxies trust and hold; --force skips that.

JSON fields (-o json): step ("bundled"|"issued"|"single"), anchors
[{fingerprint, subject, not_after, issuer}], issuer {subject, not_after,
anchor}, dropped [fingerprint], proxies {proxies, unreported, anchors
[{fingerprint, issuer, trusting, certificates}]}.`,
	}
	cmd.AddCommand(newRotateBundleCommand(), newRotateIssueCommand(), newRotateDropCommand(), newRotateStatusCommand())
	return cmd
}

// rotationStatus is the JSON of `skein identity rotate ... -o json`.
type rotationStatus struct {
	Step    string         `json:"step"`
	Anchors []anchorStatus `json:"anchors"`
	Issuer  issuerStatus   `json:"issuer"`
	Dropped []string       `json:"dropped,omitempty"`
	// Proxies is what the controller's proxies report, when --api answered.
	Proxies *identity.TrustSummary `json:"proxies,omitempty"`
}

type anchorStatus struct {
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	NotAfter    time.Time `json:"not_after"`
	Issuer      bool      `json:"issuer"` // the issuer chains to it
}

type issuerStatus struct {
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
	Anchor   string    `json:"anchor"` // fingerprint
}

func newRotationStatus(st identity.RotationState, dropped []*x509.Certificate) rotationStatus {
	out := rotationStatus{
		Issuer: issuerStatus{Subject: st.Issuer.Subject.String(), NotAfter: st.Issuer.NotAfter.UTC(), Anchor: pki.Fingerprint(st.IssuerAnchor)},
	}
	for _, a := range st.Anchors {
		out.Anchors = append(out.Anchors, anchorStatus{Fingerprint: pki.Fingerprint(a), Subject: a.Subject.String(),
			NotAfter: a.NotAfter.UTC(), Issuer: a == st.IssuerAnchor})
	}
	for _, a := range dropped {
		out.Dropped = append(out.Dropped, pki.Fingerprint(a))
	}
	switch {
	case len(st.Anchors) == 1:
		out.Step = "single"
	case st.IssuerAnchor == st.Anchors[len(st.Anchors)-1]:
		out.Step = "issued"
	default:
		out.Step = "bundled"
	}
	return out
}

// nextStep says what to wait for and do after each state.
var nextStep = map[string]string{
	"bundled": "next: wait until every proxy trusts the new anchor (its /identity lists both), then: skein identity rotate issue",
	"issued":  "next: wait until every proxy's certificate chains to the new anchor (renewed within 10 s), then: skein identity rotate drop",
	"single":  "one anchor: no rotation under way",
}

func printRotation(cmd *cobra.Command, output string, status rotationStatus) error {
	return printOutput(cmd.OutOrStdout(), output, status, func(w io.Writer) {
		fmt.Fprintf(w, "ANCHOR\tSUBJECT\tEXPIRES\tISSUER\n")
		for _, a := range status.Anchors {
			mark := "-"
			if a.Issuer {
				mark = "yes"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", a.Fingerprint[:16], a.Subject, a.NotAfter.Format(time.RFC3339), mark)
		}
		for _, d := range status.Dropped {
			fmt.Fprintf(w, "dropped %s\n", d[:16])
		}
		if p := status.Proxies; p != nil {
			fmt.Fprintf(w, "proxies: %d connected to the controller, %d not reported yet\n", p.Proxies, p.Unreported)
			for _, a := range p.Anchors {
				fmt.Fprintf(w, "  %s: trusted by %d, certificates of %d chain to it\n", a.Fingerprint[:16], a.Trusting, a.Certificates)
			}
		}
		fmt.Fprintln(w, nextStep[status.Step])
	})
}

func newRotateBundleCommand() *cobra.Command {
	var output *string
	cfg := identity.BundleConfig{}
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Step 1: trust a new anchor beside the old one",
		Long: `Adds the new anchor to ca.crt in --dir. When neither --new-anchor-cert nor
--new-anchor-key exists a new anchor is made and written there (keep the key
offline after the issue step); when both exist that anchor is used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := identity.BundleAnchor(cfg)
			if err != nil {
				return err
			}
			return printRotation(cmd, *output, newRotationStatus(st, nil))
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "dir", "", "the controller's issuer directory (required)")
	cmd.Flags().StringVar(&cfg.NewAnchorCert, "new-anchor-cert", "", "the new anchor's certificate (required; made when absent)")
	cmd.Flags().StringVar(&cfg.NewAnchorKey, "new-anchor-key", "", "the new anchor's private key (required; made when absent)")
	cmd.Flags().DurationVar(&cfg.AnchorTTL, "anchor-ttl", identity.DefaultAnchorTTL, "lifetime of a new anchor")
	output = addOutputFlag(cmd)
	for _, f := range []string{"dir", "new-anchor-cert", "new-anchor-key"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newRotateIssueCommand() *cobra.Command {
	var output *string
	var check proxyCheck
	cfg := identity.RotateConfig{}
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Step 2: a new issuer under the new anchor",
		Long: `Writes a new issuer signed by the new anchor into --dir; ca.crt is kept (it
must already hold the new anchor: the bundle step). The controller signs with
it at once and tells every proxy, which renews within 10 s.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fp, err := anchorFingerprint(cfg.AnchorCert)
			if err != nil {
				return err
			}
			if err := check.require(cmd, fp, "trust the new anchor", "wait (the controller sends it within a second; a proxy not connected to it gets it when it reconnects)",
				func(a identity.AnchorSummary) int { return a.Trusting }); err != nil {
				return err
			}
			if _, err := identity.RotateIssuer(cfg); err != nil {
				return err
			}
			st, err := identity.ReadRotationState(cfg.Dir)
			if err != nil {
				return err
			}
			return printRotation(cmd, *output, newRotationStatus(st, nil))
		},
	}
	cmd.Flags().StringVar(&cfg.Dir, "dir", "", "the controller's issuer directory (required)")
	cmd.Flags().StringVar(&cfg.AnchorCert, "new-anchor-cert", "", "the new anchor's certificate (required)")
	cmd.Flags().StringVar(&cfg.AnchorKey, "new-anchor-key", "", "the new anchor's private key (required)")
	cmd.Flags().DurationVar(&cfg.IssuerTTL, "issuer-ttl", identity.DefaultIssuerTTL, "lifetime of the issuer (cut to the anchor's)")
	check.addFlags(cmd)
	output = addOutputFlag(cmd)
	for _, f := range []string{"dir", "new-anchor-cert", "new-anchor-key"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newRotateDropCommand() *cobra.Command {
	var output, dir *string
	var check proxyCheck
	cmd := &cobra.Command{
		Use:   "drop",
		Short: "Step 3: stop trusting every anchor but the issuer's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			before, err := identity.ReadRotationState(*dir)
			if err != nil {
				return err
			}
			if err := check.require(cmd, pki.Fingerprint(before.IssuerAnchor), "hold a certificate that chains to the issuer's anchor",
				"wait (proxies renew within 10 s of the issue step)", func(a identity.AnchorSummary) int { return a.Certificates }); err != nil {
				return err
			}
			st, dropped, err := identity.DropAnchors(*dir)
			if err != nil {
				return err
			}
			return printRotation(cmd, *output, newRotationStatus(st, dropped))
		},
	}
	dir = cmd.Flags().String("dir", "", "the controller's issuer directory (required)")
	check.addFlags(cmd)
	output = addOutputFlag(cmd)
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func newRotateStatusCommand() *cobra.Command {
	var output, dir *string
	var check proxyCheck
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Which step of a rotation the issuer directory is at, and what the proxies trust and hold",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := identity.ReadRotationState(*dir)
			if err != nil {
				return err
			}
			status := newRotationStatus(st, nil)
			if !check.force {
				sum, err := check.summary(cmd)
				if err != nil {
					return err
				}
				status.Proxies = &sum
			}
			return printRotation(cmd, *output, status)
		},
	}
	check.addFlags(cmd)
	dir = cmd.Flags().String("dir", "", "the controller's issuer directory (required)")
	output = addOutputFlag(cmd)
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// proxyCheck asks the controller what its proxies trust and hold, for the
// precondition of a step; force skips it.
type proxyCheck struct {
	api   string
	force bool
}

func (c *proxyCheck) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.api, "api", defaultMetricsAPI, "the controller's API, to check what the proxies trust and hold")
	cmd.Flags().BoolVar(&c.force, "force", false, "skip the check of the proxies (a proxy that is not ready for the step fails requests)")
}

func (c *proxyCheck) summary(cmd *cobra.Command) (identity.TrustSummary, error) {
	var out identity.TrustSummary
	client, err := newMetricsClient(c.api)
	if err != nil {
		return out, err
	}
	if err := client.get(cmd.Context(), "/api/v1/trust", nil, &out); err != nil {
		return out, fmt.Errorf("asking the controller what its proxies trust (--force to go on without): %w", err)
	}
	return out, nil
}

// require fails unless every proxy that reported counts for the anchor
// with fingerprint fp in count, and none is unreported.
func (c *proxyCheck) require(cmd *cobra.Command, fp, what, wait string, count func(identity.AnchorSummary) int) error {
	if c.force {
		return nil
	}
	sum, err := c.summary(cmd)
	if err != nil {
		return err
	}
	n := 0
	for _, a := range sum.Anchors {
		if a.Fingerprint == fp {
			n = count(a)
		}
	}
	if n != sum.Proxies || sum.Unreported > 0 {
		return fmt.Errorf("%d of %d proxies %s %s (%d not reported yet): %s, then run this again (--force to go on anyway)",
			n, sum.Proxies, what, fp[:16], sum.Unreported, wait)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "checked: all %d proxies %s %s\n", sum.Proxies, what, fp[:16])
	return nil
}

func anchorFingerprint(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return pki.Fingerprint(certs[0]), nil
}
