package netns

// SetOwnerPID rewrites n's ownership record as if a process with the given
// PID (and no matching start time) had created it.
func SetOwnerPID(n *Network, pid int) error {
	return writeOwnerRecord(n.id, Owner{PID: pid})
}
