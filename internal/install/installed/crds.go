package installed

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"

	"github.com/skeinmesh/skein/internal/install"
)

// CRDUse is how many objects one of Skein's CRDs holds in the cluster,
// across namespaces.
type CRDUse struct {
	Name    string
	Objects int
	// Absent: the cluster does not have the CRD.
	Absent bool
}

// countPage is how many objects one list call fetches (their metadata
// only) while counting.
const countPage = 500

// CountCRDObjects counts the objects of each of crds in every namespace,
// page by page, reading only their metadata.
func CountCRDObjects(ctx context.Context, client metadata.Interface, crds []install.CRDResource) ([]CRDUse, error) {
	uses := make([]CRDUse, 0, len(crds))
	for _, crd := range crds {
		use := CRDUse{Name: crd.Name}
		opts := metav1.ListOptions{Limit: countPage}
		for {
			list, err := client.Resource(crd.Resource).List(ctx, opts)
			if apierrors.IsNotFound(err) {
				use.Absent = true
				break
			}
			if err != nil {
				return nil, fmt.Errorf("listing %s: %w", crd.Name, err)
			}
			use.Objects += len(list.Items)
			if opts.Continue = list.GetContinue(); opts.Continue == "" {
				break
			}
		}
		uses = append(uses, use)
	}
	return uses, nil
}
