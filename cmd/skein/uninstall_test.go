package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/install/installed"
)

func TestUninstallSaysWhatTheCRDsHold(t *testing.T) {
	uses := []installed.CRDUse{
		{Name: "authorizationpolicies.policy.skein.io", Objects: 2},
		{Name: "servers.policy.skein.io", Objects: 0},
		{Name: "workloads.skein.io", Objects: 1},
		{Name: "httproutes.policy.skein.io", Absent: true},
	}
	out := crdsLeft(uses, nil)
	for _, want := range []string{"authorizationpolicies.policy.skein.io: 2 objects", "servers.policy.skein.io: empty", "workloads.skein.io: 1 object\n", "skein uninstall --crds"} {
		if !strings.Contains(out, want) {
			t.Errorf("crdsLeft does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "httproutes") {
		t.Errorf("crdsLeft names a CRD the cluster does not have:\n%s", out)
	}

	uncounted := []installed.CRDUse{{Name: "workloads.skein.io", Objects: -1}}
	out = crdsLeft(uncounted, errors.New("no cluster reachable: loading kubeconfig"))
	if !strings.Contains(out, "  workloads.skein.io\n") || !strings.Contains(out, "not counted: no cluster reachable") {
		t.Errorf("crdsLeft without a cluster:\n%s", out)
	}
	if out := crdsLeft([]installed.CRDUse{{Name: "workloads.skein.io", Absent: true}}, nil); !strings.Contains(out, "nothing left") {
		t.Errorf("crdsLeft with no CRD in the cluster: %s", out)
	}
}

func TestUninstallCRDsRefusesToDeleteObjects(t *testing.T) {
	empty := []installed.CRDUse{{Name: "servers.policy.skein.io"}, {Name: "workloads.skein.io", Absent: true}}
	held := []installed.CRDUse{{Name: "servers.policy.skein.io"}, {Name: "workloads.skein.io", Objects: 3}}
	noCluster := errors.New("no cluster reachable: API server https://10.0.0.1: timeout")
	cases := []struct {
		name     string
		uses     []installed.CRDUse
		countErr error
		force    bool
		refusal  []string // what the refusal says; none: allowed
		said     string   // what the deletion says when allowed
	}{
		{name: "empty", uses: empty, said: "which hold no object"},
		{name: "objects", uses: held, refusal: []string{"workloads.skein.io holds 3 objects", "kubectl get workloads.skein.io -A", "--force"}},
		{name: "objects forced", uses: held, force: true, said: "(--force) workloads.skein.io: 3 objects"},
		{name: "not counted", countErr: noCluster, refusal: []string{"cannot count", "no cluster reachable", "--force"}},
		{name: "not counted forced", countErr: noCluster, force: true, said: "whatever objects they hold"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := mayDeleteCRDs(c.uses, c.countErr, c.force)
			if len(c.refusal) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if out := crdsDeleted(c.uses, c.countErr); !strings.Contains(out, c.said) {
					t.Errorf("says %q, want %q", out, c.said)
				}
				return
			}
			if err == nil {
				t.Fatal("allowed")
			}
			for _, want := range c.refusal {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q does not say %q", err, want)
				}
			}
		})
	}
}
