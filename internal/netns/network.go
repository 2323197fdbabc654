package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sync"
)

var (
	// HostPrefix holds every host address; the hub's gateway is its first address.
	HostPrefix = netip.MustParsePrefix("198.18.0.0/16")
	// Gateway is the hub's address on br0 and every host's default route.
	Gateway = netip.MustParseAddr("198.18.0.1")
	// VIPPrefix holds the virtual service IPs handed out by AllocateVIP.
	VIPPrefix = netip.MustParsePrefix("198.19.0.0/16")
)

const namespacePrefix = "skein-"

// gatewayMAC is br0's hardware address, fixed (locally administered). A
// Linux bridge given none takes the lowest of its ports' addresses, and a
// veth's is random: a host joining with a lower one, or the lowest one
// leaving, changed the gateway's address under every other host. Their ARP
// entries still named the old one, so what they sent through the hub was
// dropped until the entry was probed again: 10 to 45 s with no answer.
const gatewayMAC = "02:53:4b:00:00:01"

// hostName is what AddHost accepts: short enough that "skein-ID-NAME" stays
// readable, and safe in file names and command lines.
var hostName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// Network is one hub namespace and the host namespaces attached to it.
// Its methods are safe for concurrent use.
type Network struct {
	id  string
	hub string
	log *slog.Logger

	mu         sync.Mutex
	closed     bool
	namespaces []string // every namespace created, hub first
	hosts      map[string]*Host
	nextHost   netip.Addr
	added      int // hosts ever added: names their hub-side links, never reused
	nextVIP    netip.Addr
	services   map[netip.AddrPort][]netip.AddrPort
}

// New removes what crashed earlier runs left behind (CleanStale), then
// creates a hub namespace with its bridge. Close it when done.
func New(ctx context.Context, log *slog.Logger) (*Network, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := CleanStale(ctx, log); err != nil {
		log.Warn("cleaning stale namespaces", "err", err)
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	n := &Network{
		id:       id,
		hub:      namespacePrefix + id + "-hub",
		log:      log.With("network", id),
		hosts:    map[string]*Host{},
		nextHost: Gateway.Next(),
		nextVIP:  VIPPrefix.Addr().Next(),
		services: map[netip.AddrPort][]netip.AddrPort{},
	}
	if err := writeOwnerRecord(id, CurrentOwner()); err != nil {
		return nil, err
	}
	if err := n.createHub(ctx); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	n.log.Debug("network created", "hub", n.hub)
	return n, nil
}

// ID is the short random identifier in every namespace name of this network.
func (n *Network) ID() string { return n.id }

// Host returns the host named name, if the network has it.
func (n *Network) Host(name string) (*Host, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.hosts[name]
	return h, ok
}

// Hub is the name of the hub namespace (bridge, routing, service DNAT).
func (n *Network) Hub() string { return n.hub }

func newID() (string, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making network id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (n *Network) createHub(ctx context.Context) error {
	if err := n.addNamespace(ctx, n.hub); err != nil {
		return err
	}
	// Sysctls first: br0 and the veths then inherit send_redirects=0 from
	// "default" (the kernel ORs "all" with the device's own value).
	if _, err := run(ctx, "", "ip", "netns", "exec", n.hub, "sysctl", "-q", "-w",
		"net.ipv4.ip_forward=1",
		"net.ipv4.conf.all.send_redirects=0",
		"net.ipv4.conf.default.send_redirects=0",
	); err != nil {
		return fmt.Errorf("setting hub sysctls: %w", err)
	}
	if err := ipBatch(ctx, n.hub,
		"link set lo up",
		"link add br0 address "+gatewayMAC+" type bridge",
		"addr add "+netip.PrefixFrom(Gateway, HostPrefix.Bits()).String()+" dev br0",
		"link set br0 up",
		"route add local "+VIPPrefix.String()+" dev lo",
	); err != nil {
		return fmt.Errorf("creating hub bridge: %w", err)
	}
	if err := n.restore(ctx, hubChainsScript()); err != nil {
		return fmt.Errorf("creating hub service chains: %w", err)
	}
	return nil
}

// addNamespace creates a namespace and remembers it for Close, even when
// creation fails halfway.
func (n *Network) addNamespace(ctx context.Context, ns string) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return fmt.Errorf("network %s is closed", n.id)
	}
	n.namespaces = append(n.namespaces, ns)
	n.mu.Unlock()
	if _, err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
		return fmt.Errorf("creating namespace: %w", err)
	}
	return nil
}

// AddHost creates a namespace for one host with its own address on the
// network. name must be lower-case letters, digits and dashes (at most 32).
func (n *Network) AddHost(ctx context.Context, name string) (*Host, error) {
	if !hostName.MatchString(name) {
		return nil, fmt.Errorf("host name %q: want lower-case letters, digits and inner dashes, at most 32", name)
	}
	n.mu.Lock()
	if _, dup := n.hosts[name]; dup {
		n.mu.Unlock()
		return nil, fmt.Errorf("host %q already exists in network %s", name, n.id)
	}
	ip := n.nextHost
	if !HostPrefix.Contains(ip) || ip == netip.MustParseAddr("198.18.255.255") {
		n.mu.Unlock()
		return nil, fmt.Errorf("network %s has no host addresses left", n.id)
	}
	n.nextHost = ip.Next()
	h := &Host{Name: name, Namespace: namespacePrefix + n.id + "-" + name, IP: ip}
	n.hosts[name] = h
	// Not len(n.hosts): after a RemoveHost that would name the link of a
	// host still attached, or of one whose namespace the kernel is still
	// tearing down ("File exists").
	n.added++
	index := n.added
	n.mu.Unlock()

	if err := n.attachHost(ctx, h, fmt.Sprintf("veth%d", index)); err != nil {
		return nil, fmt.Errorf("adding host %s: %w", name, err)
	}
	n.log.Debug("host added", "host", name, "namespace", h.Namespace, "ip", ip)
	return h, nil
}

// attachHost creates the host's namespace and wires it to br0. The veth is
// created from inside the hub so that no link ever exists in the root
// namespace, not even for a moment.
func (n *Network) attachHost(ctx context.Context, h *Host, hubLink string) error {
	if err := n.addNamespace(ctx, h.Namespace); err != nil {
		return err
	}
	if err := ipBatch(ctx, n.hub,
		"link add "+hubLink+" type veth peer name eth0 netns "+h.Namespace,
		"link set "+hubLink+" master br0 up",
	); err != nil {
		return err
	}
	gw := Gateway.String()
	return ipBatch(ctx, h.Namespace,
		"link set lo up",
		"addr add "+netip.PrefixFrom(h.IP, 32).String()+" dev eth0",
		"link set eth0 up",
		"route add "+gw+" dev eth0",
		"route add default via "+gw+" dev eth0 onlink",
	)
}

// Close kills every process in the network's namespaces and deletes them
// (their veths and the bridge go with them), then its ownership record.
// Calling it again does nothing. A command started a moment before Close
// may not have entered its namespace yet and then escapes the kill (it
// ends up in a namespace without a name): stop the commands you started
// first, e.g. by cancelling their context.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	namespaces := n.namespaces
	n.mu.Unlock()

	// A fresh context: Close runs in cleanups, after the caller's context may
	// be gone, and must still finish.
	ctx := context.Background()
	var errs []error
	for i := len(namespaces) - 1; i >= 0; i-- {
		errs = append(errs, removeNamespace(ctx, namespaces[i]))
	}
	errs = append(errs, removeOwnerRecord(n.id))
	err := errors.Join(errs...)
	if err != nil {
		return fmt.Errorf("closing network %s: %w", n.id, err)
	}
	n.log.Debug("network closed")
	return nil
}

// RemoveHost kills the processes in the named host and deletes its
// namespace; its veth pair goes with it. Its address is not handed out again
// by this network.
func (n *Network) RemoveHost(ctx context.Context, name string) error {
	n.mu.Lock()
	h, ok := n.hosts[name]
	if ok {
		delete(n.hosts, name)
		n.namespaces = slices.DeleteFunc(n.namespaces, func(ns string) bool { return ns == h.Namespace })
	}
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("no host %q in network %s", name, n.id)
	}
	if err := removeNamespace(ctx, h.Namespace); err != nil {
		return fmt.Errorf("removing host %s: %w", name, err)
	}
	return nil
}

// DialFromHub connects from the hub namespace, as a node's own processes
// (a kubelet's probes) reach its pods: the connection's source is Gateway,
// and it enters the host through eth0, so the host's PREROUTING rules (a
// proxy's inbound redirect) apply to it, as they do to any client's. It
// has net.Dialer.DialContext's signature, to plug into HTTP clients.
func (n *Network) DialFromHub(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := Enter(n.hub, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
