//go:build linux

package main

import (
	"fmt"
	"os"
	"strings"
	"text/template"
)

// proxyConf is what every proxy configuration is rendered from: the same
// listeners in front of the same backend services, no logging of
// connections, no health checks, and idle timeouts of 1 h as operators set
// them (idle connections stay; l4edge-noidle runs without one, so that the
// timeout's cost is a figure of its own).
type proxyConf struct {
	// Listen are the proxy's own addresses; Backend the backend's.
	Listen, Backend backendAddrs
	// Certs is the benchmark certificate.
	Certs certFiles
	// Dir is the proxy's private directory (pid file, storage).
	Dir string
	// NginxModule is the stream module to load, "" when built in.
	NginxModule string
	// NginxUser is the worker user line ("" when not root).
	NginxUser string
	// IdleTimeout is l4edge's pools' idle_timeout ("0": none).
	IdleTimeout string
}

// l4edgeConf: plain listeners have a catch-all route (no inspection, the
// bytes are spliced); TLS listeners terminate with cert: files.
const l4edgeConf = `log: {level: warn, format: json, access: false}
shutdown_grace: 1s
tls:
  storage: {file: {{.Dir}}/storage}
listeners:
  - name: echo
    listen: {{.Listen.Echo}}
    routes: [{name: all, pool: echo}]
  - name: source
    listen: {{.Listen.Source}}
    routes: [{name: all, pool: source}]
  - name: sink
    listen: {{.Listen.Sink}}
    routes: [{name: all, pool: sink}]
  - name: tls-echo
    listen: {{.Listen.TLSEcho}}
    routes:
      - name: all
        pool: echo
        tls: {mode: terminate, cert: files, cert_file: {{.Certs.Cert}}, key_file: {{.Certs.Key}}}
  - name: tls-source
    listen: {{.Listen.TLSSource}}
    routes:
      - name: all
        pool: source
        tls: {mode: terminate, cert: files, cert_file: {{.Certs.Cert}}, key_file: {{.Certs.Key}}}
  - name: tls-sink
    listen: {{.Listen.TLSSink}}
    routes:
      - name: all
        pool: sink
        tls: {mode: terminate, cert: files, cert_file: {{.Certs.Cert}}, key_file: {{.Certs.Key}}}
  - name: ws
    listen: {{.Listen.WS}}
    routes: [{name: all, pool: ws}]
  - name: wss
    listen: {{.Listen.WSS}}
    routes:
      - name: all
        pool: ws
        tls: {mode: terminate, cert: files, cert_file: {{.Certs.Cert}}, key_file: {{.Certs.Key}}}
  - name: wss-pass
    listen: {{.Listen.WSSPass}}
    routes: [{name: all, pool: wss}]
  - name: iperf
    listen: {{.Listen.Iperf}}
    routes: [{name: all, pool: iperf}]
pools:
  iperf:
    idle_timeout: {{.IdleTimeout}}
    backends: [{address: {{.Backend.Iperf}}}]
  ws:
    idle_timeout: {{.IdleTimeout}}
    backends: [{address: {{.Backend.WS}}}]
  wss:
    idle_timeout: {{.IdleTimeout}}
    backends: [{address: {{.Backend.WSS}}}]
  echo:
    idle_timeout: {{.IdleTimeout}}
    backends: [{address: {{.Backend.Echo}}}]
  source:
    idle_timeout: {{.IdleTimeout}}
    backends: [{address: {{.Backend.Source}}}]
  sink:
    idle_timeout: {{.IdleTimeout}}
    backends: [{address: {{.Backend.Sink}}}]
`

// haproxyConf: mode tcp, two threads, maxconn high enough for 9,000 idle
// connections (two descriptors each) within a 20,000 descriptor limit.
// TLS 1.3 suites are listed in Go's client order so that every proxy
// negotiates TLS_AES_128_GCM_SHA256.
const haproxyConf = `global
    nbthread 2
    maxconn 9800
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode tcp
    maxconn 9800
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend echo
    bind {{.Listen.Echo}}
    default_backend echo
frontend source
    bind {{.Listen.Source}}
    default_backend source
frontend sink
    bind {{.Listen.Sink}}
    default_backend sink
frontend tls_echo
    bind {{.Listen.TLSEcho}} ssl crt {{.Certs.Combined}}
    default_backend echo
frontend tls_source
    bind {{.Listen.TLSSource}} ssl crt {{.Certs.Combined}}
    default_backend source
frontend tls_sink
    bind {{.Listen.TLSSink}} ssl crt {{.Certs.Combined}}
    default_backend sink
frontend ws
    bind {{.Listen.WS}}
    default_backend ws
frontend wss
    bind {{.Listen.WSS}} ssl crt {{.Certs.Combined}}
    default_backend ws
frontend wss_pass
    bind {{.Listen.WSSPass}}
    default_backend wss
frontend iperf
    bind {{.Listen.Iperf}}
    default_backend iperf

backend echo
    server s1 {{.Backend.Echo}}
backend source
    server s1 {{.Backend.Source}}
backend sink
    server s1 {{.Backend.Sink}}
backend ws
    server s1 {{.Backend.WS}}
backend wss
    server s1 {{.Backend.WSS}}
backend iperf
    server s1 {{.Backend.Iperf}}
`

// nginxConf: stream module, two workers, each allowed enough connections
// to hold all 9,000 idle ones (clients and upstreams both count).
const nginxConf = `{{if .NginxModule}}load_module {{.NginxModule}};
{{end}}{{.NginxUser}}daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 20000;
pid {{.Dir}}/nginx.pid;
error_log stderr warn;

events {
    worker_connections 19500;
}

stream {
    proxy_connect_timeout 5s;
    proxy_timeout 1h;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;

    server {
        listen {{.Listen.Echo}};
        proxy_pass {{.Backend.Echo}};
    }
    server {
        listen {{.Listen.Source}};
        proxy_pass {{.Backend.Source}};
    }
    server {
        listen {{.Listen.Sink}};
        proxy_pass {{.Backend.Sink}};
    }
    server {
        listen {{.Listen.TLSEcho}} ssl;
        ssl_certificate {{.Certs.Cert}};
        ssl_certificate_key {{.Certs.Key}};
        proxy_pass {{.Backend.Echo}};
    }
    server {
        listen {{.Listen.TLSSource}} ssl;
        ssl_certificate {{.Certs.Cert}};
        ssl_certificate_key {{.Certs.Key}};
        proxy_pass {{.Backend.Source}};
    }
    server {
        listen {{.Listen.TLSSink}} ssl;
        ssl_certificate {{.Certs.Cert}};
        ssl_certificate_key {{.Certs.Key}};
        proxy_pass {{.Backend.Sink}};
    }
    server {
        listen {{.Listen.WS}};
        proxy_pass {{.Backend.WS}};
    }
    server {
        listen {{.Listen.WSS}} ssl;
        ssl_certificate {{.Certs.Cert}};
        ssl_certificate_key {{.Certs.Key}};
        proxy_pass {{.Backend.WS}};
    }
    server {
        listen {{.Listen.WSSPass}};
        proxy_pass {{.Backend.WSS}};
    }
    server {
        listen {{.Listen.Iperf}};
        proxy_pass {{.Backend.Iperf}};
    }
}
`

// writeConf renders tmpl with c (a proxyConf, or the soak's data) into path.
func writeConf(path, tmpl string, c any) error {
	t, err := template.New(path).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return fmt.Errorf("parse config template for %s: %w", path, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, c); err != nil {
		return fmt.Errorf("render %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
