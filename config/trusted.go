package config

import (
	"fmt"
	"net/netip"
)

// ParsePrefix parses one proxy_protocol_in.trusted entry: a CIDR
// ("10.0.0.0/8", masked to its network) or a single address (an IPv4 one
// written as IPv4-mapped IPv6 is taken as IPv4).
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// TrustedPrefixes returns the parsed Trusted entries. Validation has
// checked them in a loaded configuration; an error names the entry.
func (p *ProxyProtocolIn) TrustedPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(p.Trusted))
	for i, t := range p.Trusted {
		pr, err := ParsePrefix(t)
		if err != nil {
			return nil, fmt.Errorf("trusted[%d]: %w", i, err)
		}
		out = append(out, pr)
	}
	return out, nil
}
