# The two commands of the README, plus the pieces they are made of.
.PHONY: up test down purge operator crds

up:          ## build, start the local cluster with sandrun, run the example
	hack/demo.sh

test:        ## every test: lints, unit tests, e2e on the local cluster
	hack/test.sh

down:        ## stop the operator, gateway and cluster, leave nothing running
	-hack/gateway.sh stop
	-hack/operator.sh stop
	cluster/down.sh

purge:       ## as down, and delete the cluster's state
	-hack/gateway.sh stop
	-hack/operator.sh stop
	cluster/down.sh --purge

crds:        ## regenerate the CRD YAML (and the chart's copy) from the Rust types
	cargo run -q -p sandrun-crds --bin crdgen crds
	cargo run -q -p sandrun-crds --bin crdgen charts/sandrun/files
