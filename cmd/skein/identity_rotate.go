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
		Short: "Rotate the trust anchor, step by step, in the issuer directory or Secret the controller serves",
		Long: `Rotates the mesh's trust anchor without a failed request, in three steps on
the issuer the controller serves: its directory (--dir: -identity-dir, skein
up's state/identity) or, on Kubernetes (--kubernetes), the issuer Secret
skein-identity-issuer and its copy in the ConfigMap skein-trust-anchors:

  skein identity rotate bundle (--dir D | --kubernetes) --new-anchor-cert new.crt --new-anchor-key new.key
      ca.crt holds the old and the new anchor; the controller sends it to
      every proxy at once (and its injector to every new pod); a proxy keeps
      what it was sent across its container's restarts
  skein identity rotate issue  (--dir D | --kubernetes) --new-anchor-cert new.crt --new-anchor-key new.key
      refused until every proxy trusts the new anchor; then a new issuer
      under it, and proxies renew under it within 10 s
  skein identity rotate drop   (--dir D | --kubernetes)
      refused until every proxy's certificate chains to the new anchor;
      then ca.crt keeps only the new anchor

  skein identity rotate status (--dir D | --kubernetes)   the step, and what the proxies trust

issue, drop and status ask the controller what its proxies trust and hold:
with --dir its API (--api, as skein stat); with --kubernetes every controller
replica's /metrics through the API server's pod proxy, added up. --force
skips that. The new anchor's key stays in the file given: it never enters
the cluster.

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
	var target rotateTarget
	cfg := identity.BundleConfig{}
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Step 1: trust a new anchor beside the old one",
		Long: `Adds the new anchor to ca.crt. When neither --new-anchor-cert nor
--new-anchor-key exists a new anchor is made and written there (keep the key
offline after the issue step); when both exist that anchor is used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := target.open(cmd); err != nil {
				return err
			}
			st, err := identity.BundleAnchor(cmd.Context(), target.store, cfg)
			if err != nil {
				return err
			}
			return printRotation(cmd, *output, newRotationStatus(st, nil))
		},
	}
	target.addFlags(cmd, false)
	cmd.Flags().StringVar(&cfg.NewAnchorCert, "new-anchor-cert", "", "the new anchor's certificate (required; made when absent)")
	cmd.Flags().StringVar(&cfg.NewAnchorKey, "new-anchor-key", "", "the new anchor's private key (required; made when absent)")
	cmd.Flags().DurationVar(&cfg.AnchorTTL, "anchor-ttl", identity.DefaultAnchorTTL, "lifetime of a new anchor")
	output = addOutputFlag(cmd)
	for _, f := range []string{"new-anchor-cert", "new-anchor-key"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newRotateIssueCommand() *cobra.Command {
	var output *string
	var target rotateTarget
	var anchorCert, anchorKey string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Step 2: a new issuer under the new anchor",
		Long: `Writes a new issuer signed by the new anchor; ca.crt is kept (it must already
hold the new anchor: the bundle step). The controller signs with it at once
and tells every proxy, which renews within 10 s.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			anchor, err := readAnchor(anchorCert)
			if err != nil {
				return err
			}
			if err := target.open(cmd); err != nil {
				return err
			}
			fp := pki.Fingerprint(anchor)
			if err := target.require(cmd, fp, "trust the new anchor", "wait (the controller sends it within a second; a proxy not connected to it gets it when it reconnects)",
				func(a identity.AnchorSummary) int { return a.Trusting }); err != nil {
				return err
			}
			if _, err := identity.IssueUnderAnchor(cmd.Context(), target.store, anchorCert, anchorKey, ttl); err != nil {
				return err
			}
			st, err := identity.ReadRotationState(cmd.Context(), target.store)
			if err != nil {
				return err
			}
			return printRotation(cmd, *output, newRotationStatus(st, nil))
		},
	}
	target.addFlags(cmd, true)
	cmd.Flags().StringVar(&anchorCert, "new-anchor-cert", "", "the new anchor's certificate (required)")
	cmd.Flags().StringVar(&anchorKey, "new-anchor-key", "", "the new anchor's private key (required)")
	cmd.Flags().DurationVar(&ttl, "issuer-ttl", identity.DefaultIssuerTTL, "lifetime of the issuer (cut to the anchor's)")
	output = addOutputFlag(cmd)
	for _, f := range []string{"new-anchor-cert", "new-anchor-key"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newRotateDropCommand() *cobra.Command {
	var output *string
	var target rotateTarget
	cmd := &cobra.Command{
		Use:   "drop",
		Short: "Step 3: stop trusting every anchor but the issuer's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := target.open(cmd); err != nil {
				return err
			}
			before, err := identity.ReadRotationState(cmd.Context(), target.store)
			if err != nil {
				return err
			}
			if err := target.require(cmd, pki.Fingerprint(before.IssuerAnchor), "hold a certificate that chains to the issuer's anchor",
				"wait (proxies renew within 10 s of the issue step)", func(a identity.AnchorSummary) int { return a.Certificates }); err != nil {
				return err
			}
			st, dropped, err := identity.DropAnchors(cmd.Context(), target.store)
			if err != nil {
				return err
			}
			return printRotation(cmd, *output, newRotationStatus(st, dropped))
		},
	}
	target.addFlags(cmd, true)
	output = addOutputFlag(cmd)
	return cmd
}

func newRotateStatusCommand() *cobra.Command {
	var output *string
	var target rotateTarget
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Which step of a rotation the issuer is at, and what the proxies trust and hold",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := target.open(cmd); err != nil {
				return err
			}
			st, err := identity.ReadRotationState(cmd.Context(), target.store)
			if err != nil {
				return err
			}
			status := newRotationStatus(st, nil)
			if !target.force {
				sum, err := target.summary(cmd.Context())
				if err != nil {
					return err
				}
				status.Proxies = &sum
			}
			return printRotation(cmd, *output, status)
		},
	}
	target.addFlags(cmd, true)
	output = addOutputFlag(cmd)
	return cmd
}

// readAnchor reads the first certificate of a PEM file.
func readAnchor(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs[0], nil
}
