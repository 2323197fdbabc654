package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/metadata"

	"github.com/skeinmesh/skein/config"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/installed"
)

// countTimeout bounds counting the objects of Skein's CRDs.
const countTimeout = 30 * time.Second

func newUninstallCommand() *cobra.Command {
	var f installFlags
	var crds, force bool
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Print the manifests to delete Skein from a cluster",
		Long: `Prints the objects skein install creates, webhook first, for:

  skein uninstall | kubectl delete --ignore-not-found -f -

Skein's CRDs are left, as helm uninstall leaves a chart's CRDs: deleting them
deletes every skein.io resource in the cluster (Workloads, Servers, policies).
Uninstall says on stderr which CRDs it leaves and how many objects each holds
(read from the cluster: the usual kubeconfig rules, --kubeconfig, --context).
With --crds they are deleted too, but only when they hold no object, or with
--force; with no cluster to count in, --crds needs --force. Injected pods keep
their proxies until they are restarted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if force && !crds {
				return errors.New("--force goes with --crds: it deletes the CRDs even when they hold objects")
			}
			uses, countErr := f.countCRDObjects(cmd.Context())
			if crds {
				if err := mayDeleteCRDs(uses, countErr, force); err != nil {
					return err
				}
			}
			out, err := install.RenderUninstall(f.cfg, crds)
			if err != nil {
				return err
			}
			if _, err := cmd.OutOrStdout().Write(out); err != nil {
				return err
			}
			if crds {
				_, err = fmt.Fprint(cmd.ErrOrStderr(), crdsDeleted(uses, countErr))
			} else {
				_, err = fmt.Fprint(cmd.ErrOrStderr(), crdsLeft(uses, countErr))
			}
			return err
		},
	}
	f.register(cmd.Flags(), false)
	f.cluster.register(cmd.Flags())
	cmd.Flags().BoolVar(&crds, "crds", false, "also delete Skein's CRDs, when they hold no object (see --force)")
	cmd.Flags().BoolVar(&force, "force", false, "with --crds: delete the CRDs even when they hold objects (or cannot be counted), and with them every skein.io resource in the cluster")
	return cmd
}

// countCRDObjects counts the objects of each of Skein's CRDs in the
// cluster. Without a cluster, it returns every CRD uncounted (Objects -1)
// and why.
func (f *installFlags) countCRDObjects(ctx context.Context) ([]installed.CRDUse, error) {
	files, err := config.CRDs()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded CRDs: %w", err)
	}
	crds, err := install.CRDResources(files)
	if err != nil {
		return nil, err
	}
	uncounted := make([]installed.CRDUse, len(crds))
	for i, crd := range crds {
		uncounted[i] = installed.CRDUse{Name: crd.Name, Objects: -1}
	}
	restConfig, err := f.cluster.reachConfig()
	if err != nil {
		return uncounted, fmt.Errorf("no cluster reachable: %w", err)
	}
	client, err := metadata.NewForConfig(restConfig)
	if err != nil {
		return uncounted, err
	}
	ctx, cancel := context.WithTimeout(ctx, countTimeout)
	defer cancel()
	uses, err := installed.CountCRDObjects(ctx, client, crds)
	if err != nil {
		return uncounted, err
	}
	return uses, nil
}

// mayDeleteCRDs refuses --crds when a CRD holds objects, which deleting it
// would delete, or when they could not be counted, unless forced.
func mayDeleteCRDs(uses []installed.CRDUse, countErr error, force bool) error {
	if force {
		return nil
	}
	if countErr != nil {
		return fmt.Errorf("skein uninstall --crds: cannot count the objects of Skein's CRDs (%v), and deleting a CRD deletes every object of its kind; give --force to delete them whatever they hold, or leave out --crds", countErr)
	}
	var held []string
	for _, u := range uses {
		if u.Objects > 0 {
			held = append(held, fmt.Sprintf("%s holds %s (kubectl get %s -A)", u.Name, objectCount(u), u.Name))
		}
	}
	if len(held) > 0 {
		return fmt.Errorf("skein uninstall --crds: refusing to delete Skein's CRDs, which would delete every object of theirs: %s; delete those objects first, give --force to delete them with the CRDs, or leave out --crds to keep the CRDs", strings.Join(held, "; "))
	}
	return nil
}

// crdsLeft says what uninstall without --crds leaves: each CRD the
// cluster has, with the objects it holds.
func crdsLeft(uses []installed.CRDUse, countErr error) string {
	var b strings.Builder
	b.WriteString("skein uninstall: leaves Skein's CRDs and every object of theirs")
	if countErr != nil {
		fmt.Fprintf(&b, " (objects not counted: %v)", countErr)
	}
	b.WriteString(":\n")
	listed := 0
	for _, u := range uses {
		if u.Absent {
			continue
		}
		listed++
		if u.Objects < 0 {
			fmt.Fprintf(&b, "  %s\n", u.Name)
		} else {
			fmt.Fprintf(&b, "  %s: %s\n", u.Name, objectCount(u))
		}
	}
	if listed == 0 {
		return "skein uninstall: Skein's CRDs are not in the cluster: nothing left\n"
	}
	b.WriteString("to delete them too: skein uninstall --crds | kubectl delete --ignore-not-found -f -\n")
	return b.String()
}

// crdsDeleted says what uninstall --crds deletes with the CRDs (only
// something when forced).
func crdsDeleted(uses []installed.CRDUse, countErr error) string {
	if countErr != nil {
		return fmt.Sprintf("skein uninstall: deletes Skein's CRDs with whatever objects they hold (--force; not counted: %v)\n", countErr)
	}
	var held []string
	for _, u := range uses {
		if u.Objects > 0 {
			held = append(held, fmt.Sprintf("%s: %s", u.Name, objectCount(u)))
		}
	}
	if len(held) == 0 {
		return "skein uninstall: deletes Skein's CRDs, which hold no object\n"
	}
	return fmt.Sprintf("skein uninstall: deletes Skein's CRDs and with them (--force) %s\n", strings.Join(held, ", "))
}

// objectCount says how many objects a CRD holds.
func objectCount(u installed.CRDUse) string {
	switch u.Objects {
	case 0:
		return "empty"
	case 1:
		return "1 object"
	default:
		return fmt.Sprintf("%d objects", u.Objects)
	}
}
