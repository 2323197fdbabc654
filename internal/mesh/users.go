package mesh

import (
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/netns"
)

// Every workload's application runs as a uid of its own and its proxy as
// another, so that no application can read the mesh's keys (root's, 0600),
// another workload's join token, or its own (only its proxy's uid can), and
// no two workloads share a user. Workload number i (in the order the mesh
// first saw them) gets application uid appUIDBase+i and proxy uid
// proxyUIDBase+i, each with the same gid; skein-init exempts the proxy's
// uid in that workload's hosts. Numbers are never reused while the mesh
// runs, and uids the machine already has a user for are skipped.
const (
	appUIDBase   = 30000
	proxyUIDBase = 31000
	maxWorkloads = 1000 // uids per range
)

// workloadUsers are the users one workload's processes run as.
type workloadUsers struct {
	app, proxy netns.User
}

// usersFor returns w's users, allocating them the first time w is seen.
// The caller holds m.mu.
func (m *Mesh) usersFor(w *v1alpha1.Workload) (workloadUsers, error) {
	key := workloadKey(w)
	if i, ok := m.userIndex[key]; ok {
		return usersAt(i), nil
	}
	for ; m.nextUserIndex < maxWorkloads; m.nextUserIndex++ {
		i := m.nextUserIndex
		if uidTaken(appUIDBase+i) || uidTaken(proxyUIDBase+i) {
			continue
		}
		m.userIndex[key] = i
		m.nextUserIndex++
		return usersAt(i), nil
	}
	return workloadUsers{}, fmt.Errorf("no free uid left in %d-%d for %s (at most %d workloads per mesh run)",
		appUIDBase, appUIDBase+maxWorkloads-1, key, maxWorkloads)
}

func usersAt(i int) workloadUsers {
	return workloadUsers{
		app:   netns.User{UID: appUIDBase + i, GID: appUIDBase + i},
		proxy: netns.User{UID: proxyUIDBase + i, GID: proxyUIDBase + i},
	}
}

// uidTaken reports whether the machine has a user or group with this id: a
// workload running as it could read that user's files.
func uidTaken(id int) bool {
	s := strconv.Itoa(id)
	_, uerr := user.LookupId(s)
	_, gerr := user.LookupGroupId(s)
	return uerr == nil || gerr == nil
}

// homeDir makes the application's home directory, its own and closed to
// everyone else, and returns its path.
func (m *Mesh) homeDir(w *v1alpha1.Workload, u netns.User) (string, error) {
	dir := m.path(homesDir, hostBase(w))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chown(dir, u.UID, u.GID); err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o700)
}
