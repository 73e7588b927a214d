package main

import (
	"fmt"
	"os"
	"strings"
	"text/template"
)

// proxyConf is what every proxy configuration is rendered from: the same
// four listeners in front of the same four backend services, no logging of
// connections, no health checks, generous timeouts (idle connections stay).
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
pools:
  echo:
    backends: [{address: {{.Backend.Echo}}}]
  source:
    backends: [{address: {{.Backend.Source}}}]
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
frontend tls_echo
    bind {{.Listen.TLSEcho}} ssl crt {{.Certs.Combined}}
    default_backend echo
frontend tls_source
    bind {{.Listen.TLSSource}} ssl crt {{.Certs.Combined}}
    default_backend source

backend echo
    server s1 {{.Backend.Echo}}
backend source
    server s1 {{.Backend.Source}}
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
