/* The one definition of the ebpf-net maps (see netflow_maps.bpf.h). */
#define DKE_DEFINE_MAPS
#include "netflow_maps.bpf.h"

/* flow_gen's template names its value type only through a pointer, which
 * clang describes as a bare declaration unless the object uses the type:
 * the linker then cannot size the generations. This use keeps it whole. */
static const struct dke_flow_lanes dke_flow_lanes_in_full __attribute__((used));

char LICENSE[] SEC("license") = "Dual BSD/GPL";
