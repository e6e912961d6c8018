/* The one definition of the ebpf-net maps (see netflow_maps.bpf.h). */
#define DKE_DEFINE_MAPS
#include "netflow_maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
