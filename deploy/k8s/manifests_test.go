package k8s_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// What the agent serves and how the pod wires it (CONTRACT.md, "In a Kubernetes pod").
const (
	agentContainer = "health-agent"
	appContainer   = "app"
	agentPort      = 3008
	appPort        = 3007
	agentUID       = 65532
	configMount    = "/etc/health-agent"
	configKey      = "agent.yaml"
)

// agentBin is the agent binary, built once by TestMain from the main module (../..).
var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "health-agent-k8s-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "agent")
	// Built as the Dockerfile builds it, so TestImage's build of the same sources hits the build cache.
	build, err := imageBuild(filepath.Join("..", "..", "Dockerfile"), "manifest-test", agentBin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the agent: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// podMonitor is the part of the Prometheus Operator's PodMonitor that the component uses; decoding is
// strict, so a field outside it fails the test.
type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port        string `json:"port"`
			Path        string `json:"path"`
			Interval    string `json:"interval"`
			Relabelings []struct {
				TargetLabel string `json:"targetLabel"`
				Replacement string `json:"replacement"`
			} `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// rendered is a kustomization's output, every object decoded strictly into its Go type.
type rendered struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	podMonitors map[string]*podMonitor
	pdbs        map[string]*policyv1.PodDisruptionBudget
	netpols     map[string]*networkingv1.NetworkPolicy
}

// render builds the kustomization in dir in-process, as `kubectl kustomize dir` would.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendered{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		configMaps:  map[string]*corev1.ConfigMap{},
		podMonitors: map[string]*podMonitor{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		netpols:     map[string]*networkingv1.NetworkPolicy{},
	}
	for _, res := range resMap.Resources() {
		b, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s/%s: %v", res.GetKind(), res.GetName(), err)
		}
		var into any
		switch res.GetKind() {
		case "Deployment":
			d := &appsv1.Deployment{}
			r.deployments[res.GetName()], into = d, d
		case "Service":
			s := &corev1.Service{}
			r.services[res.GetName()], into = s, s
		case "ConfigMap":
			c := &corev1.ConfigMap{}
			r.configMaps[res.GetName()], into = c, c
		case "PodMonitor":
			p := &podMonitor{}
			r.podMonitors[res.GetName()], into = p, p
		case "PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			r.pdbs[res.GetName()], into = p, p
		case "NetworkPolicy":
			n := &networkingv1.NetworkPolicy{}
			r.netpols[res.GetName()], into = n, n
		default:
			// A Secret in particular: the token is referenced, never shipped.
			t.Errorf("%s renders a %s (%s), which no test checks", dir, res.GetKind(), res.GetName())
			continue
		}
		if err := yaml.UnmarshalStrict(b, into); err != nil {
			t.Errorf("%s/%s does not decode strictly: %v", res.GetKind(), res.GetName(), err)
		}
	}
	return r
}

func (r *rendered) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	d := r.deployments[name]
	if d == nil {
		t.Fatalf("no Deployment %q", name)
	}
	return d
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// port resolves a probe's or Service's port (a number or a container port's name) in c.
func port(t *testing.T, c *corev1.Container, p intstr.IntOrString) int {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	t.Fatalf("container %q has no port named %q", c.Name, p.StrVal)
	return 0
}

// httpTarget is where an HTTP probe goes, "<port><path>", or "tcp:<port>".
func httpTarget(t *testing.T, c *corev1.Container, p *corev1.Probe) string {
	t.Helper()
	switch {
	case p == nil:
		return "none"
	case p.HTTPGet != nil:
		return fmt.Sprintf("%d%s", port(t, c, p.HTTPGet.Port), p.HTTPGet.Path)
	case p.TCPSocket != nil:
		return fmt.Sprintf("tcp:%d", port(t, c, p.TCPSocket.Port))
	default:
		return "other"
	}
}

// agentConfig is the part of agent.yaml the manifests must agree with.
type agentConfig struct {
	Server struct {
		Listen        string `json:"listen"`
		ShutdownDelay string `json:"shutdownDelay"`
	} `json:"server"`
}

// checkPod asserts what every kustomization of this directory must keep: the contract's probe mapping,
// the native sidecar, the hardening, the mounted secret and a config that `agent validate` accepts.
// It returns the agent's config as rendered.
func checkPod(t *testing.T, r *rendered) []byte {
	t.Helper()
	d := r.deployment(t, "legacy-app")
	pod := &d.Spec.Template.Spec
	agent := container(t, pod.InitContainers, agentContainer)
	app := container(t, pod.Containers, appContainer)

	t.Run("probes follow the contract", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			c     *corev1.Container
			probe *corev1.Probe
			want  string
		}{
			// The agent's own probes only ask whether the agent is up: /startupz or /readyz would wait for
			// the app's dependencies, which the app starts only after this startupProbe has passed.
			{"agent startupProbe", agent, agent.StartupProbe, "3008/livez"},
			{"agent livenessProbe", agent, agent.LivenessProbe, "3008/livez"},
			{"app readinessProbe", app, app.ReadinessProbe, "3008/readyz"},
			{"app startupProbe", app, app.StartupProbe, "3008/startupz"},
			// Liveness never depends on a dependency: the app's own port, not the agent.
			{"app livenessProbe", app, app.LivenessProbe, "tcp:3007"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := httpTarget(t, tc.c, tc.probe); got != tc.want {
					t.Errorf("targets %s, want %s", got, tc.want)
				}
			})
		}
		if agent.ReadinessProbe != nil && agent.ReadinessProbe.HTTPGet != nil && agent.ReadinessProbe.HTTPGet.Path != "/livez" {
			t.Errorf("agent readinessProbe targets %s: the app's readinessProbe already asks /readyz", agent.ReadinessProbe.HTTPGet.Path)
		}
		if s := app.StartupProbe; s != nil {
			if budget := time.Duration(s.PeriodSeconds*s.FailureThreshold) * time.Second; budget < 2*time.Minute {
				t.Errorf("app startupProbe gives %s to bring the dependencies up, want >= 2m", budget)
			}
		}
	})

	t.Run("native sidecar", func(t *testing.T) {
		if agent.RestartPolicy == nil || *agent.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("init container %q restartPolicy = %v, want Always", agentContainer, agent.RestartPolicy)
		}
		for _, c := range pod.Containers {
			if c.Name == agentContainer {
				t.Errorf("%q is also a regular container", agentContainer)
			}
		}
		if len(agent.Ports) != 1 || agent.Ports[0].ContainerPort != agentPort || agent.Ports[0].Name != "health" {
			t.Errorf("agent ports = %+v, want one named health on %d", agent.Ports, agentPort)
		}
		if len(app.Ports) != 1 || app.Ports[0].ContainerPort != appPort {
			t.Errorf("app ports = %+v, want %d", app.Ports, appPort)
		}
		if pod.ShareProcessNamespace == nil || !*pod.ShareProcessNamespace {
			t.Error("shareProcessNamespace is not true: the memory probe cannot see the app's process")
		}
	})

	t.Run("rolling update keeps capacity", func(t *testing.T) {
		ru := d.Spec.Strategy.RollingUpdate
		if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable == nil {
			t.Fatalf("strategy = %+v, want RollingUpdate with maxUnavailable", d.Spec.Strategy)
		}
		if ru.MaxUnavailable.String() != "0" {
			t.Errorf("maxUnavailable = %s, want 0", ru.MaxUnavailable.String())
		}
		if ru.MaxSurge == nil || ru.MaxSurge.String() == "0" {
			t.Errorf("maxSurge = %v: with maxUnavailable 0 a rollout needs a surge", ru.MaxSurge)
		}
	})

	t.Run("hardened agent", func(t *testing.T) {
		sc := agent.SecurityContext
		if sc == nil {
			t.Fatal("agent has no securityContext")
		}
		psc := pod.SecurityContext
		isTrue := func(b *bool) bool { return b != nil && *b }
		isFalse := func(b *bool) bool { return b != nil && !*b }
		if !isTrue(sc.RunAsNonRoot) {
			t.Error("runAsNonRoot is not true")
		}
		if sc.RunAsUser == nil || *sc.RunAsUser != agentUID {
			t.Errorf("runAsUser = %v, want %d", sc.RunAsUser, agentUID)
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			t.Error("readOnlyRootFilesystem is not true")
		}
		if !isFalse(sc.AllowPrivilegeEscalation) {
			t.Error("allowPrivilegeEscalation is not false")
		}
		if sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("capabilities = %+v, want drop [ALL] and no add", sc.Capabilities)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("privileged")
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil && psc != nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("seccompProfile = %+v, want RuntimeDefault", seccomp)
		}
		if psc == nil || !isTrue(psc.RunAsNonRoot) {
			t.Error("the pod's securityContext does not require runAsNonRoot")
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Error("automountServiceAccountToken is not false: nothing in the pod talks to the API server")
		}
		for _, c := range pod.Containers {
			if c.SecurityContext == nil || !isFalse(c.SecurityContext.AllowPrivilegeEscalation) {
				t.Errorf("container %q may escalate privileges", c.Name)
			}
		}
	})

	t.Run("resources", func(t *testing.T) {
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := agent.Resources.Requests[res]
			lim, okLim := agent.Resources.Limits[res]
			if !okReq || !okLim {
				t.Errorf("agent %s: request set %v, limit set %v; want both", res, okReq, okLim)
				continue
			}
			if req.Cmp(lim) > 0 {
				t.Errorf("agent %s request %s > limit %s", res, req.String(), lim.String())
			}
		}
		var gomemlimit bool
		for _, e := range agent.Env {
			if e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil &&
				e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" && e.ValueFrom.ResourceFieldRef.ContainerName == agentContainer {
				gomemlimit = true
			}
		}
		if !gomemlimit {
			t.Error("GOMEMLIMIT does not follow the agent's memory limit")
		}
	})

	t.Run("app memory request and limit", func(t *testing.T) {
		req, okReq := app.Resources.Requests[corev1.ResourceMemory]
		lim, okLim := app.Resources.Limits[corev1.ResourceMemory]
		if !okReq || !okLim {
			t.Fatalf("app memory: request set %v, limit set %v; want both (the memory probe's thresholds are set against the limit)", okReq, okLim)
		}
		if req.Cmp(lim) > 0 {
			t.Errorf("app memory request %s > limit %s", req.String(), lim.String())
		}
	})

	t.Run("replicas spread and a disruption budget", func(t *testing.T) {
		podLabels := d.Spec.Template.Labels
		var byHost bool
		for _, c := range pod.TopologySpreadConstraints {
			if c.LabelSelector == nil || !selects(c.LabelSelector.MatchLabels, podLabels) {
				t.Errorf("topologySpreadConstraint %s selects %v, not the pod's labels %v", c.TopologyKey, c.LabelSelector, podLabels)
			}
			if c.MaxSkew != 1 {
				t.Errorf("topologySpreadConstraint %s maxSkew %d, want 1", c.TopologyKey, c.MaxSkew)
			}
			// DoNotSchedule would leave a replica (or a rollout's surge pod) pending on a cluster with
			// fewer nodes than replicas.
			if c.WhenUnsatisfiable != corev1.ScheduleAnyway {
				t.Errorf("topologySpreadConstraint %s whenUnsatisfiable %s, want ScheduleAnyway", c.TopologyKey, c.WhenUnsatisfiable)
			}
			byHost = byHost || c.TopologyKey == "kubernetes.io/hostname"
		}
		if !byHost {
			t.Error("no topologySpreadConstraint over kubernetes.io/hostname: both replicas may land on one node")
		}
		var budgets []*policyv1.PodDisruptionBudget
		for _, b := range r.pdbs {
			if b.Spec.Selector != nil && selects(b.Spec.Selector.MatchLabels, podLabels) {
				budgets = append(budgets, b)
			}
		}
		if len(budgets) != 1 {
			t.Fatalf("%d PodDisruptionBudgets select the pod, want 1", len(budgets))
		}
		b := budgets[0]
		replicas := int(*d.Spec.Replicas)
		switch {
		case b.Spec.MaxUnavailable != nil:
			if n := b.Spec.MaxUnavailable.IntValue(); b.Spec.MaxUnavailable.Type != intstr.Int || n < 1 || n >= replicas {
				t.Errorf("PDB maxUnavailable %s: want 1..%d (a drain must be able to proceed and keep a replica)", b.Spec.MaxUnavailable.String(), replicas-1)
			}
		case b.Spec.MinAvailable != nil:
			if n := b.Spec.MinAvailable.IntValue(); b.Spec.MinAvailable.Type != intstr.Int || n < 1 || n >= replicas {
				t.Errorf("PDB minAvailable %s: want 1..%d", b.Spec.MinAvailable.String(), replicas-1)
			}
		default:
			t.Error("PDB sets neither maxUnavailable nor minAvailable")
		}
		// Readiness follows the dependencies: in an outage every pod is unready, and only AlwaysAllow
		// lets a node drain evict them.
		if p := b.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
			t.Errorf("PDB unhealthyPodEvictionPolicy %v, want AlwaysAllow", p)
		}
	})

	t.Run("figma token mounted from a Secret, never inlined", func(t *testing.T) {
		var secretVol *corev1.Volume
		for i := range pod.Volumes {
			if v := &pod.Volumes[i]; v.Secret != nil && v.Secret.SecretName == "figma-token" {
				secretVol = v
			}
		}
		if secretVol == nil {
			t.Fatal("no volume from the Secret figma-token")
		}
		if secretVol.Secret.Optional == nil || !*secretVol.Secret.Optional {
			t.Error("the figma-token Secret volume is not optional: the pod would not start without it")
		}
		var mountPath string
		for _, m := range agent.VolumeMounts {
			if m.Name == secretVol.Name {
				mountPath = m.MountPath
				if !m.ReadOnly || m.SubPath != "" {
					t.Errorf("secret mount %+v: want readOnly and no subPath (subPath never sees a rotation)", m)
				}
			}
		}
		if mountPath == "" {
			t.Fatal("the agent does not mount the figma-token volume")
		}
		tokenFile := ""
		for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
			for _, e := range c.Env {
				if e.Name == "FIGMA_TOKEN_FILE" && c.Name == agentContainer {
					tokenFile = e.Value
				}
				if strings.Contains(strings.ToUpper(e.Name), "TOKEN") && !strings.HasSuffix(e.Name, "_FILE") && e.Value != "" {
					t.Errorf("container %q has %s as a literal value", c.Name, e.Name)
				}
			}
			if len(c.EnvFrom) > 0 {
				t.Errorf("container %q imports whole objects with envFrom", c.Name)
			}
		}
		if path.Dir(tokenFile) != mountPath {
			t.Errorf("FIGMA_TOKEN_FILE = %q, want a file in the secret mount %s", tokenFile, mountPath)
		}
	})

	t.Run("config mounted from the generated ConfigMap", func(t *testing.T) {
		var cmVol *corev1.Volume
		for i := range pod.Volumes {
			if v := &pod.Volumes[i]; v.ConfigMap != nil {
				cmVol = v
			}
		}
		if cmVol == nil {
			t.Fatal("no ConfigMap volume")
		}
		if r.configMaps[cmVol.ConfigMap.Name] == nil {
			t.Errorf("volume %q names ConfigMap %q, which is not rendered", cmVol.Name, cmVol.ConfigMap.Name)
		}
		// The name keeps no hash suffix: an update changes this ConfigMap in place and the agent reloads.
		if cmVol.ConfigMap.Name != "health-agent-config" {
			t.Errorf("ConfigMap name %q, want health-agent-config (updated in place, hot-reloaded)", cmVol.ConfigMap.Name)
		}
		var mounted bool
		for _, m := range agent.VolumeMounts {
			if m.Name == cmVol.Name {
				mounted = true
				if m.MountPath != configMount || m.SubPath != "" {
					t.Errorf("config mount %+v: want the directory %s, no subPath (a subPath mount never sees an update)", m, configMount)
				}
			}
		}
		if !mounted {
			t.Error("the agent does not mount the config")
		}
		if !slices.Contains(agent.Args, "--config="+configMount+"/"+configKey) {
			t.Errorf("agent args %q do not point --config at the mounted file", agent.Args)
		}
	})

	cm := r.configMaps["health-agent-config"]
	if cm == nil {
		t.Fatal("no ConfigMap health-agent-config")
	}
	data := []byte(cm.Data[configKey])

	t.Run("config agrees with the pod", func(t *testing.T) {
		var cfg agentConfig
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			t.Fatalf("agent.yaml: %v", err)
		}
		_, p, err := net.SplitHostPort(cfg.Server.Listen)
		if err != nil || p != strconv.Itoa(agentPort) {
			t.Errorf("server.listen = %q, want port %d (the container port the probes target)", cfg.Server.Listen, agentPort)
		}
		delay, err := time.ParseDuration(cfg.Server.ShutdownDelay)
		if err != nil {
			t.Fatalf("server.shutdownDelay %q: %v", cfg.Server.ShutdownDelay, err)
		}
		// The agent drains for shutdownDelay and exits within 5s after it; 10s leaves the kubelet room.
		if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace < delay+10*time.Second {
			t.Errorf("terminationGracePeriodSeconds %s < shutdownDelay %s + 10s: the kubelet would kill the agent mid-drain", grace, delay)
		}
	})

	t.Run("memory probe judges the app against its limit", func(t *testing.T) {
		var cfg map[string]any
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		mem := probeNamed(t, cfg, "memory")
		env := map[string]string{}
		for _, e := range agent.Env {
			if e.ValueFrom == nil {
				env[e.Name] = e.Value
			}
		}
		// Reading the app's cgroup limit through /proc/<pid>/root needs the app's UID; the agent runs as
		// 65532, and the app as its image's user. So byte thresholds, against the app's limit.
		if sc := app.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != agentUID {
			bytesOf := func(key string) (int64, error) {
				v := mem[key]
				if s, ok := v.(string); ok {
					v = expand(s, env)
				}
				return iecBytes(v)
			}
			warn, werr := bytesOf("warnBytes")
			crit, cerr := bytesOf("critBytes")
			if werr != nil || cerr != nil {
				t.Fatalf("the agent cannot read the app's cgroup limit, so the memory probe needs warnBytes and critBytes (MEMORY_WARN_BYTES, MEMORY_CRIT_BYTES): %v, %v", werr, cerr)
			}
			limit := app.Resources.Limits[corev1.ResourceMemory]
			if !(warn < crit && float64(crit) <= 0.9*float64(limit.Value())) {
				t.Errorf("memory warnBytes %d, critBytes %d: want warn < crit <= 90%% of the app's limit %s", warn, crit, limit.String())
			}
		}
	})

	t.Run("agent validate accepts the ConfigMap", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), configKey)
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(agentBin, "validate", "--config", file)
		cmd.Env = podEnv(agent)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("agent validate: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
		}
		if !strings.Contains(stdout.String(), "is valid") {
			t.Errorf("agent validate printed %q", stdout.String())
		}
	})
	return data
}

// iecBytes reads a byte size as the configs write it: a number of bytes, or one with a Ki/Mi/Gi
// suffix (KiB/MiB/GiB too).
func iecBytes(v any) (int64, error) {
	switch n := v.(type) {
	case float64:
		return int64(n), nil
	case string:
		for i, unit := range []string{"Ki", "Mi", "Gi"} {
			if num, ok := strings.CutSuffix(strings.TrimSuffix(n, "B"), unit); ok {
				f, err := strconv.ParseFloat(num, 64)
				return int64(f * float64(int64(1)<<(10*(i+1)))), err
			}
		}
		return strconv.ParseInt(n, 10, 64)
	}
	return 0, fmt.Errorf("not a byte size: %v", v)
}

// podEnv is the agent container's literal environment, as the config sees it in the pod (values from
// references are left out), plus what a process needs to run. Nothing from the test's own environment.
func podEnv(c *corev1.Container) []string {
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + os.TempDir()}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	return env
}

func TestBase(t *testing.T) {
	for _, dir := range []string{".", "base"} {
		t.Run(dir, func(t *testing.T) { testBase(t, dir) })
	}
}

func testBase(t *testing.T, dir string) {
	r := render(t, dir)
	data := checkPod(t, r)

	t.Run("ConfigMap is configs/agent.yaml", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join("..", "..", "configs", "agent.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		copied, err := os.ReadFile(filepath.Join("base", "agent.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(copied, want) {
			t.Error("deploy/k8s/base/agent.yaml differs from configs/agent.yaml: cp configs/agent.yaml deploy/k8s/base/")
		}
		if !bytes.Equal(data, want) {
			t.Error("the rendered ConfigMap's agent.yaml differs from configs/agent.yaml")
		}
	})

	t.Run("no egress unless opted in", func(t *testing.T) {
		if _, ok := parseConfig(t, data)["egress"]; ok {
			t.Error("the base config has an egress section; it belongs in components/egress")
		}
		app := container(t, r.deployment(t, "legacy-app").Spec.Template.Spec.Containers, appContainer)
		for _, e := range app.Env {
			if e.Name == "FIGMA_API_BASE" || e.Name == "MCP_URL" {
				t.Errorf("the base gives the app %s=%s; it belongs in components/egress", e.Name, e.Value)
			}
		}
	})

	t.Run("Service", func(t *testing.T) {
		svc := r.services["legacy-app"]
		if svc == nil {
			t.Fatal("no Service legacy-app")
		}
		d := r.deployment(t, "legacy-app")
		if !selects(svc.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("Service selector %v does not select the pod's labels %v", svc.Spec.Selector, d.Spec.Template.Labels)
		}
		pod := &d.Spec.Template.Spec
		got := map[string]int{}
		for _, p := range svc.Spec.Ports {
			c := container(t, pod.Containers, appContainer)
			if p.Name == "health" {
				c = container(t, pod.InitContainers, agentContainer)
			}
			got[p.Name] = port(t, c, p.TargetPort)
		}
		if want := map[string]int{"http": appPort, "health": agentPort}; !reflect.DeepEqual(got, want) {
			t.Errorf("Service ports reach %v, want %v", got, want)
		}
	})

	t.Run("Prometheus annotations", func(t *testing.T) {
		ann := r.deployment(t, "legacy-app").Spec.Template.Annotations
		want := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "3008", "prometheus.io/path": "/metrics"}
		for k, v := range want {
			if ann[k] != v {
				t.Errorf("annotation %s = %q, want %q", k, ann[k], v)
			}
		}
	})

	t.Run("the agent serves every path the manifests use", func(t *testing.T) {
		d := r.deployment(t, "legacy-app")
		pod := &d.Spec.Template.Spec
		agent := container(t, pod.InitContainers, agentContainer)
		app := container(t, pod.Containers, appContainer)
		var paths []string
		for _, p := range []*corev1.Probe{agent.StartupProbe, agent.LivenessProbe, agent.ReadinessProbe, app.StartupProbe, app.ReadinessProbe} {
			if p != nil && p.HTTPGet != nil {
				paths = append(paths, p.HTTPGet.Path)
			}
		}
		paths = append(paths, d.Spec.Template.Annotations["prometheus.io/path"], "/api/health", "/api/health/detailed", "/api/health/circuit-breakers")
		base := startAgent(t, data, agent)
		for _, p := range paths {
			t.Run(p, func(t *testing.T) {
				status, body := get(t, base+p)
				// 503 is a verdict (nothing runs on :3007 here); 404 would mean the path does not exist.
				if status != http.StatusOK && status != http.StatusServiceUnavailable {
					t.Errorf("GET %s: %d %q", p, status, body)
				}
			})
		}
		if status, body := get(t, base+"/livez"); status != http.StatusOK {
			t.Errorf("/livez = %d %q with every dependency down: liveness must not depend on them", status, body)
		}
	})
}

func TestBrowserlessOverlay(t *testing.T) {
	r := render(t, filepath.Join("overlays", "browserless"))
	data := checkPod(t, r)

	t.Run("config differs from the base only in the browser pool", func(t *testing.T) {
		want, got := defaultConfig(t), parseConfig(t, data)
		pool := probeNamed(t, want, "browserPool")
		pool["mode"] = "browserless"
		pool["urls"] = "${BROWSER_CDP_URLS:-http://browserless:3000}"
		pool["token"] = map[string]any{"env": "BROWSERLESS_TOKEN"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("overlays/browserless/agent.yaml drifted from configs/agent.yaml:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("BROWSER_CDP_URLS reaches the browserless Service", func(t *testing.T) {
		agent := container(t, r.deployment(t, "legacy-app").Spec.Template.Spec.InitContainers, agentContainer)
		var raw string
		for _, e := range agent.Env {
			if e.Name == "BROWSER_CDP_URLS" {
				raw = e.Value
			}
		}
		u, err := url.Parse(raw)
		if err != nil || u.Hostname() == "" {
			t.Fatalf("BROWSER_CDP_URLS = %q, want a URL", raw)
		}
		svc := r.services[u.Hostname()]
		if svc == nil {
			t.Fatalf("BROWSER_CDP_URLS names %q, which is no rendered Service", u.Hostname())
		}
		var found bool
		for _, p := range svc.Spec.Ports {
			found = found || strconv.Itoa(int(p.Port)) == u.Port()
		}
		if !found {
			t.Errorf("Service %s has no port %s", svc.Name, u.Port())
		}
		bl := r.deployment(t, "browserless")
		if !selects(svc.Spec.Selector, bl.Spec.Template.Labels) {
			t.Errorf("Service %s selects %v, not the browserless pods %v", svc.Name, svc.Spec.Selector, bl.Spec.Template.Labels)
		}
	})

	bl := r.deployment(t, "browserless")
	browserless := container(t, bl.Spec.Template.Spec.Containers, "browserless")

	t.Run("browserless image pinned to a release", func(t *testing.T) {
		// v2.x: the /pressure shape pkg/probes' TestCDPBrowserless serves ({"pressure": {isAvailable, …}}).
		if !regexp.MustCompile(`^ghcr\.io/browserless/chromium:v2\.\d+\.\d+$`).MatchString(browserless.Image) {
			t.Errorf("browserless image %q, want ghcr.io/browserless/chromium:v2.X.Y (a release, not latest)", browserless.Image)
		}
	})

	t.Run("one token from one Secret for browserless and the probe", func(t *testing.T) {
		ref := func(c *corev1.Container, name string) *corev1.SecretKeySelector {
			for _, e := range c.Env {
				if e.Name == name {
					if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						t.Errorf("container %s: %s is not from a Secret", c.Name, name)
						return nil
					}
					return e.ValueFrom.SecretKeyRef
				}
			}
			t.Errorf("container %s has no %s", c.Name, name)
			return nil
		}
		server := ref(browserless, "TOKEN")
		agent := container(t, r.deployment(t, "legacy-app").Spec.Template.Spec.InitContainers, agentContainer)
		probe := ref(agent, "BROWSERLESS_TOKEN")
		if server == nil || probe == nil {
			return
		}
		if server.Name != probe.Name || server.Key != probe.Key {
			t.Errorf("browserless reads Secret %s/%s, the agent %s/%s", server.Name, server.Key, probe.Name, probe.Key)
		}
		if server.Optional != nil && *server.Optional {
			t.Error("browserless's TOKEN is optional: without the Secret it would run with no token")
		}
		pool := probeNamed(t, parseConfig(t, data), "browserPool")
		if tok, _ := pool["token"].(map[string]any); tok["env"] != "BROWSERLESS_TOKEN" {
			t.Errorf("browserPool token = %v, want {env: BROWSERLESS_TOKEN}", pool["token"])
		}
	})

	t.Run("only the app's pods reach browserless", func(t *testing.T) {
		var policies []*networkingv1.NetworkPolicy
		for _, np := range r.netpols {
			if selects(np.Spec.PodSelector.MatchLabels, bl.Spec.Template.Labels) {
				policies = append(policies, np)
			}
		}
		if len(policies) != 1 {
			t.Fatalf("%d NetworkPolicies select the browserless pods, want 1", len(policies))
		}
		np := policies[0]
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("policyTypes %v: ingress is not restricted", np.Spec.PolicyTypes)
		}
		appLabels := r.deployment(t, "legacy-app").Spec.Template.Labels
		if len(np.Spec.Ingress) == 0 {
			t.Fatal("no ingress rule: nothing, the app included, reaches browserless")
		}
		for _, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 {
				t.Error("an ingress rule without from admits every pod")
			}
			for _, peer := range rule.From {
				if peer.NamespaceSelector != nil || peer.IPBlock != nil || peer.PodSelector == nil ||
					!selects(peer.PodSelector.MatchLabels, appLabels) || len(peer.PodSelector.MatchExpressions) > 0 {
					t.Errorf("ingress peer %+v: want only the app's pods %v in this namespace", peer, appLabels)
				}
			}
			for _, p := range rule.Ports {
				if p.Port == nil || port(t, browserless, *p.Port) != 3000 {
					t.Errorf("ingress port %v, want browserless's 3000", p.Port)
				}
			}
		}
	})

	t.Run("readinessProbe needs a session to be available with the token", func(t *testing.T) {
		rp := browserless.ReadinessProbe
		if rp == nil || rp.Exec == nil {
			t.Fatalf("readinessProbe %+v: want an exec probe (an httpGet on /pressure passes when full or fails with a token)", rp)
		}
		if rp.TimeoutSeconds < 5 {
			t.Errorf("readinessProbe timeoutSeconds %d: node's start on a busy node needs >= 5", rp.TimeoutSeconds)
		}
		node, err := exec.LookPath("node")
		if err != nil || rp.Exec.Command[0] != "node" {
			if os.Getenv("CI") != "" {
				t.Fatalf("cannot run the probe's command %q (node: %v): CI must install it", rp.Exec.Command[0], err)
			}
			t.Skipf("cannot run the probe's command %q here (node: %v)", rp.Exec.Command[0], err)
		}
		const token = "bl-token-0123456789"
		free := `{"pressure":{"cpu":3,"date":1,"isAvailable":true,"maxConcurrent":10,"maxQueued":10,"memory":40,"message":"","queued":0,"reason":"","recentlyRejected":0,"running":2}}`
		full := `{"pressure":{"isAvailable":false,"maxConcurrent":10,"queued":10,"running":10,"reason":"full","message":"Too many sessions"}}`
		for _, tc := range []struct {
			name       string
			serverWith string // the token browserless runs with
			probeWith  string // $TOKEN in the probe's environment
			body       string
			ready      bool
		}{
			{"a session available", token, token, free, true},
			{"full", token, token, full, false},
			{"token rejected", token, "another-token", free, false},
			{"no token where one is needed", token, "", free, false},
			{"no token on either side", "", "", free, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				srv := pressureServer(t, tc.serverWith, tc.body)
				cmd := exec.Command(node, rp.Exec.Command[1:]...)
				cmd.Env = []string{"PATH=/usr/bin:/bin", "PORT=" + srv}
				if tc.probeWith != "" {
					cmd.Env = append(cmd.Env, "TOKEN="+tc.probeWith)
				}
				out, err := cmd.CombinedOutput()
				if ready := err == nil; ready != tc.ready {
					t.Errorf("ready = %t (%v: %s), want %t", ready, err, out, tc.ready)
				}
				if strings.Contains(string(out), token) {
					t.Error("the probe's output shows the token")
				}
			})
		}
	})
}

// pressureServer stands in for browserless v2 on loopback: /pressure answers body, and 401 when the
// server has a token and the request's ?token= is not it. It returns the port.
func pressureServer(t *testing.T, token, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pressure" {
			http.NotFound(w, r)
			return
		}
		if token != "" && r.URL.Query().Get("token") != token {
			http.Error(w, `{"message":"Bad or missing authentication."}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Port()
}

func TestMonitoringOverlay(t *testing.T) {
	r := render(t, filepath.Join("overlays", "monitoring"))
	checkPod(t, r)
	pm := r.podMonitors["health-agent"]
	if pm == nil {
		t.Fatal("no PodMonitor health-agent")
	}
	if pm.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("apiVersion %q", pm.APIVersion)
	}
	d := r.deployment(t, "legacy-app")
	if !selects(pm.Spec.Selector.MatchLabels, d.Spec.Template.Labels) || len(pm.Spec.Selector.MatchExpressions) > 0 {
		t.Errorf("PodMonitor selector %+v does not select the pod's labels %v", pm.Spec.Selector, d.Spec.Template.Labels)
	}
	agent := container(t, d.Spec.Template.Spec.InitContainers, agentContainer)
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("podMetricsEndpoints = %+v, want one", pm.Spec.PodMetricsEndpoints)
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if got := port(t, agent, intstr.FromString(ep.Port)); got != agentPort || ep.Path != "/metrics" {
		t.Errorf("PodMonitor scrapes port %d path %q, want %d /metrics", got, ep.Path, agentPort)
	}
	// deploy/observability's target alerts select the job by name.
	var job string
	for _, rl := range ep.Relabelings {
		if rl.TargetLabel == "job" {
			job = rl.Replacement
		}
	}
	rules, err := os.ReadFile(filepath.Join("..", "observability", "prometheus-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if job == "" || !strings.Contains(string(rules), `up{job="`+job+`"}`) {
		t.Errorf("PodMonitor sets job %q, which the alert rules do not select", job)
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func parseConfig(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("agent.yaml: %v", err)
	}
	return cfg
}

// defaultConfig is configs/agent.yaml, the agent's embedded default.
func defaultConfig(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return parseConfig(t, b)
}

// expand replaces ${VAR} and ${VAR:-default} in s as the agent does before parsing, from env.
func expand(s string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v := env[m[1]]; v != "" {
			return v
		}
		return m[3] // the default, or "" for ${VAR}
	})
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

func probeNamed(t *testing.T, cfg map[string]any, name string) map[string]any {
	t.Helper()
	list, _ := cfg["probes"].([]any)
	for _, p := range list {
		if m, ok := p.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	t.Fatalf("no probe %q", name)
	return nil
}

// startAgent serves data with the agent binary on a loopback port, with the container's literal
// environment, and returns its base URL. Every dependency points at loopback: tests reach nothing else.
func startAgent(t *testing.T, data []byte, c *corev1.Container) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), configKey)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentBin, "--config", file, "--listen", "127.0.0.1:0")
	cmd.Env = append(podEnv(c), "FIGMA_API_URL=http://127.0.0.1:9", "BROWSER_CDP_URLS=http://127.0.0.1:9", "MCP_URL=http://127.0.0.1:9/mcp")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	logDone := make(chan struct{})
	var logMu sync.Mutex
	var logs strings.Builder
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "health-agent serving" {
				select {
				case addr <- line.Addr:
				default:
				}
			}
		}
	}()
	logged := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.String()
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // this test is about paths; the lifecycle is tested in cmd/agent
		<-logDone
		_ = cmd.Wait()
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-logDone:
		t.Fatalf("the agent exited before serving:\n%s", logged())
	case <-time.After(60 * time.Second):
		t.Fatalf("the agent did not log its address within 60s:\n%s", logged())
	}
	return ""
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// egressRoute is the part of an egress route (CONTRACT.md "Egress") the manifests must agree with.
type egressRoute struct {
	Name     string                       `json:"name"`
	Prefix   string                       `json:"prefix"`
	Upstream string                       `json:"upstream"`
	Breaker  string                       `json:"breaker"`
	Headers  map[string]map[string]string `json:"headers"`
}

func TestEgressOverlay(t *testing.T) {
	r := render(t, filepath.Join("overlays", "egress"))
	data := checkPod(t, r)
	cfg := parseConfig(t, data)
	d := r.deployment(t, "legacy-app")
	pod := &d.Spec.Template.Spec
	agent := container(t, pod.InitContainers, agentContainer)
	app := container(t, pod.Containers, appContainer)

	t.Run("config is configs/agent.yaml plus an egress section", func(t *testing.T) {
		got := parseConfig(t, data)
		delete(got, "egress")
		if want := defaultConfig(t); !reflect.DeepEqual(got, want) {
			t.Errorf("components/egress/agent.yaml differs from configs/agent.yaml outside egress:\n got %v\nwant %v", got, want)
		}
	})

	var egress struct {
		Listen string        `json:"listen"`
		Routes []egressRoute `json:"routes"`
	}
	raw, _ := yaml.Marshal(cfg["egress"])
	if err := yaml.Unmarshal(raw, &egress); err != nil {
		t.Fatalf("egress: %v", err)
	}

	t.Run("the app's base URLs go through the agent", func(t *testing.T) {
		host, _, err := net.SplitHostPort(egress.Listen)
		if err != nil || !net.ParseIP(host).IsLoopback() {
			t.Fatalf("egress.listen %q: want a loopback address, reachable only from the pod", egress.Listen)
		}
		env := map[string]string{}
		for _, e := range app.Env {
			env[e.Name] = e.Value
		}
		for variable, route := range map[string]string{"FIGMA_API_BASE": "figma", "MCP_URL": "mcp"} {
			i := slices.IndexFunc(egress.Routes, func(r egressRoute) bool { return r.Name == route })
			if i < 0 {
				t.Errorf("no egress route %q", route)
				continue
			}
			u, err := url.Parse(env[variable])
			if err != nil || u.Scheme != "http" || u.Host != egress.Listen ||
				!strings.HasPrefix(u.Path+"/", egress.Routes[i].Prefix) {
				t.Errorf("app %s = %q, want http://%s%s…", variable, env[variable], egress.Listen, strings.TrimSuffix(egress.Routes[i].Prefix, "/"))
			}
		}
	})

	t.Run("routes share the probes' breakers", func(t *testing.T) {
		breakers := map[string]bool{}
		for _, p := range cfg["probes"].([]any) {
			if b, _ := p.(map[string]any)["breaker"].(string); b != "" {
				breakers[b] = true
			}
		}
		for _, rt := range egress.Routes {
			if !breakers[rt.Breaker] {
				t.Errorf("route %s uses breaker %q, which no probe uses", rt.Name, rt.Breaker)
			}
		}
	})

	t.Run("the Figma token is injected from the mounted Secret", func(t *testing.T) {
		var mount string
		for _, m := range agent.VolumeMounts {
			if m.Name == "figma-token" {
				mount = m.MountPath
			}
		}
		for _, rt := range egress.Routes {
			for h, v := range rt.Headers {
				if v["file"] == "" && v["env"] == "" {
					t.Errorf("route %s header %s is not a secret reference: %v", rt.Name, h, v)
				}
				if f := v["file"]; f != "" && path.Dir(f) != mount {
					t.Errorf("route %s header %s reads %s, outside the figma-token mount %s", rt.Name, h, f, mount)
				}
			}
		}
		if len(egress.Routes) == 0 || egress.Routes[0].Headers["X-Figma-Token"] == nil {
			t.Error("the figma route does not inject X-Figma-Token")
		}
	})

	// The app's calls in flight when the pod is deleted complete: the kubelet stops a native sidecar
	// only after the regular containers have exited, and starts it before them.
	t.Run("the agent starts before the app and stops after it", func(t *testing.T) {
		if agent.RestartPolicy == nil || *agent.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("agent restartPolicy %v: not a native sidecar, so it could stop before the app", agent.RestartPolicy)
		}
		if i := slices.IndexFunc(pod.InitContainers, func(c corev1.Container) bool { return c.Name == agentContainer }); i != 0 {
			t.Errorf("agent is init container %d: an init container before it would delay it", i)
		}
		if agent.StartupProbe == nil {
			t.Error("agent has no startupProbe: the app could start before the proxy listens")
		}
	})
}
