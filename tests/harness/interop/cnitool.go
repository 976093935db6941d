// mcicnitool: a libcni driver for the interop suite (Debian has no cnitool). It runs one verb on
// a conflist the way libcni-based runtimes do: ADD, CHECK (with the cached prevResult) or DEL.
// Built offline: GO111MODULE=off GOPATH=<tmp>:/usr/share/gocode go build (golang-github-appc-cni-dev).
//
// usage: mcicnitool add|check|del NETWORK NETNS
// env:   NETCONFPATH (conflist dir), CNI_PATH, CNI_CONTAINERID, CNI_IFNAME (default eth0),
//        CNI_CACHE_DIR (libcni's cache; keeps /var/lib/cni untouched), CNI_ARGS (k=v;k=v),
//        CAP_ARGS (JSON object -> runtimeConfig of plugins that declare the capability)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "mcicnitool: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: mcicnitool add|check|del NETWORK NETNS")
	}
	verb, name, netns := os.Args[1], os.Args[2], os.Args[3]
	netconf, err := libcni.LoadConfList(os.Getenv("NETCONFPATH"), name)
	if err != nil {
		fail("load %s: %v", name, err)
	}
	rt := &libcni.RuntimeConf{
		ContainerID: os.Getenv("CNI_CONTAINERID"),
		NetNS:       netns,
		IfName:      os.Getenv("CNI_IFNAME"),
	}
	if rt.IfName == "" {
		rt.IfName = "eth0"
	}
	for _, kv := range strings.Split(os.Getenv("CNI_ARGS"), ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			rt.Args = append(rt.Args, [2]string{k, v})
		}
	}
	if caps := os.Getenv("CAP_ARGS"); caps != "" {
		if err := json.Unmarshal([]byte(caps), &rt.CapabilityArgs); err != nil {
			fail("CAP_ARGS: %v", err)
		}
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), os.Getenv("CNI_CACHE_DIR"), nil)
	ctx := context.Background()
	switch verb {
	case "add":
		res, err := cni.AddNetworkList(ctx, netconf, rt)
		if err != nil {
			fail("add: %v", err)
		}
		_ = res.Print()
	case "check":
		err = cni.CheckNetworkList(ctx, netconf, rt)
	case "del":
		err = cni.DelNetworkList(ctx, netconf, rt)
	default:
		fail("unknown verb %q", verb)
	}
	if err != nil {
		fail("%s: %v", verb, err)
	}
}
