// Package sandbox provides an in-memory Kubernetes cluster for demos and
// tests: client-go's fake clientset, filled from YAML seed files and taught
// the scale subresource, so that actions run against it exactly as they run
// against a real cluster.
//
// Nothing reconciles in a sandbox. Objects keep the status they were seeded
// with, except where this package stands in for a controller (see the scale
// subresource).
package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/uuid"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
)

// New returns a fake clientset holding every object of the *.yaml and *.yml
// files at the top of seed, read in name order. A file may hold several
// documents separated by "---". A document that does not decode, is of a kind
// client-go does not know, or names an object twice is an error naming the
// file and the document (counting from 1).
//
// Decoding is strict: an unknown or duplicated field in a seed is an error,
// since it is almost always a typo that would otherwise be dropped silently.
//
// Objects must carry their namespace; no "default" is assumed. Objects
// without a resourceVersion, uid or creationTimestamp get one, as an API
// server would give them.
//
// The clientset is safe for concurrent use.
func New(seed fs.FS) (*Cluster, error) {
	objs, err := load(seed)
	if err != nil {
		return nil, err
	}
	// NewSimpleClientset rather than NewClientset: no action uses
	// server-side apply, and the field-managed tracker parses the whole
	// OpenAPI schema at start-up, which costs some 14 MB of heap and slows
	// every call of a sandbox that serves under load.
	cs := fake.NewSimpleClientset()
	for _, o := range objs {
		if err := cs.Tracker().Add(o.obj); err != nil {
			return nil, fmt.Errorf("seed %s, document %d: add %s: %w", o.file, o.doc, describe(o.obj), err)
		}
	}
	addScaleReactors(cs)
	addEvictionReactor(cs)
	addJobReactor(cs)
	return newCluster(cs), nil
}

// Cluster is the sandbox's clientset: client-go's fake, except that it does
// not keep the fake's log of every call for tests to inspect. A sandbox lives
// as long as the service, and the log would grow without bound; it is
// cleared every forgetEvery uses of an API group, outside the fake's lock.
type Cluster struct {
	fake *fake.Clientset
	api  kube.Interface
	uses atomic.Uint64
}

func newCluster(cs *fake.Clientset) *Cluster {
	return &Cluster{fake: cs, api: adapt.Clientset(cs)}
}

// Fake is the client-go fake behind the cluster, for tests that add
// reactors or read its objects.
func (c *Cluster) Fake() *fake.Clientset { return c.fake }

const forgetEvery = 1024

func (c *Cluster) forget() {
	if c.uses.Add(1)%forgetEvery == 0 {
		c.fake.ClearActions()
	}
}

// The API groups the actions use; each use may clear the call log.

func (c *Cluster) AppsV1() kube.AppsV1                 { c.forget(); return c.api.AppsV1() }
func (c *Cluster) CoreV1() kube.CoreV1                 { c.forget(); return c.api.CoreV1() }
func (c *Cluster) AutoscalingV2() kube.AutoscalingV2   { c.forget(); return c.api.AutoscalingV2() }
func (c *Cluster) PolicyV1() kube.PolicyV1             { c.forget(); return c.api.PolicyV1() }
func (c *Cluster) BatchV1() kube.BatchV1               { c.forget(); return c.api.BatchV1() }
func (c *Cluster) CoordinationV1() kube.CoordinationV1 { c.forget(); return c.api.CoordinationV1() }

// seeded is one decoded seed object and where it came from.
type seeded struct {
	obj  runtime.Object
	file string
	doc  int
}

func load(seed fs.FS) ([]seeded, error) {
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		m, err := fs.Glob(seed, pattern)
		if err != nil {
			return nil, fmt.Errorf("list seed files: %w", err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		return nil, errors.New("seed has no *.yaml or *.yml files")
	}
	sort.Strings(files)

	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	var objs []seeded
	for _, name := range files {
		data, err := fs.ReadFile(seed, name)
		if err != nil {
			return nil, fmt.Errorf("read seed %s: %w", name, err)
		}
		docs, err := split(data)
		if err != nil {
			return nil, fmt.Errorf("seed %s: %w", name, err)
		}
		for i, doc := range docs {
			if blank(doc) {
				continue
			}
			obj, err := decode(decoder, doc)
			if err != nil {
				return nil, fmt.Errorf("seed %s, document %d: %w", name, i+1, err)
			}
			if err := complete(obj, now); err != nil {
				return nil, fmt.Errorf("seed %s, document %d: %w", name, i+1, err)
			}
			objs = append(objs, seeded{obj: obj, file: name, doc: i + 1})
		}
	}
	return objs, nil
}

// split cuts a multi-document YAML file at its "---" lines.
func split(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		docs = append(docs, doc)
	}
}

// blank reports whether a document holds only comments and white space,
// as the part of a file before its first "---" often does.
func blank(doc []byte) bool {
	for line := range strings.Lines(string(doc)) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

func decode(decoder runtime.Decoder, doc []byte) (runtime.Object, error) {
	obj, _, err := decoder.Decode(doc, nil, nil)
	if runtime.IsNotRegisteredError(err) {
		// The scheme's own message names the scheme's source file, not the
		// problem; say it in the seed author's terms.
		var tm metav1.TypeMeta
		if yaml.Unmarshal(doc, &tm) == nil {
			return nil, fmt.Errorf("unknown kind %q (apiVersion %q): the sandbox holds only built-in Kubernetes kinds: %w", tm.Kind, tm.APIVersion, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return obj, nil
}

// complete checks what the tracker would accept without complaint and fills
// in what an API server sets on create.
func complete(obj runtime.Object, now metav1.Time) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return fmt.Errorf("%s has no object metadata: %w", describe(obj), err)
	}
	if m.GetName() == "" {
		return fmt.Errorf("%s has no metadata.name", describe(obj))
	}
	if m.GetResourceVersion() == "" {
		m.SetResourceVersion("1")
	}
	if m.GetUID() == "" {
		m.SetUID(uuid.NewUUID())
	}
	if ts := m.GetCreationTimestamp(); ts.IsZero() {
		m.SetCreationTimestamp(now)
	}
	return nil
}

// describe names an object as kubectl does: "deployment sockshop-production/carts".
func describe(obj runtime.Object) string {
	kind := strings.ToLower(obj.GetObjectKind().GroupVersionKind().Kind)
	if kind == "" {
		kind = "object"
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return kind
	}
	if ns := m.GetNamespace(); ns != "" {
		return kind + " " + ns + "/" + m.GetName()
	}
	return kind + " " + m.GetName()
}
