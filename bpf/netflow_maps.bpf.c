/* The one definition of the netflow maps and tunables (see netflow_maps.bpf.h). */
#define DKE_DEFINE_MAPS
#include "netflow_maps.bpf.h"

const volatile __u8 dke_ipv6_disabled = 0;

char LICENSE[] SEC("license") = "Dual BSD/GPL";
