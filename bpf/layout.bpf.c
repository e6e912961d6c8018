/* Not a program: an object whose BTF describes every struct and enum that
 * crosses a process boundary (kernel -> loader -> daemon). scripts/gen-layout
 * reads it and writes the daemon's decoder tables
 * (src/loader/layout.generated.ts), so no layout is written twice. */
#include "vmlinux.h"
#include "netflow.h"
#include "dns.h"
#include "bash.h"
#include "frame.h"

#define KEEP(T) T __attribute__((used)) keep_##T
typedef struct dke_flow_key dke_flow_key_t;
typedef struct dke_flow_stats dke_flow_stats_t;
typedef struct dke_flow_delta dke_flow_delta_t;
typedef struct dke_frame dke_frame_t;
typedef struct dke_collect_cmd dke_collect_cmd_t;
typedef struct dke_stop_cmd dke_stop_cmd_t;
typedef struct dke_telemetry_rec dke_telemetry_rec_t;
typedef struct dke_proc_name dke_proc_name_t;
typedef struct dke_dnsflow_stat dke_dnsflow_stat_t;
typedef struct dke_dns_name dke_dns_name_t;
typedef struct dke_bash_line dke_bash_line_t;
typedef struct dke_bash_origin dke_bash_origin_t;
typedef enum dke_frame_type dke_frame_type_t;
typedef enum dke_collect_what dke_collect_what_t;
typedef enum dke_direction dke_direction_t;
typedef enum dke_dns_side dke_dns_side_t;
typedef enum dke_bash_flags dke_bash_flags_t;
KEEP(dke_flow_key_t);
KEEP(dke_flow_stats_t);
KEEP(dke_flow_delta_t);
KEEP(dke_frame_t);
KEEP(dke_collect_cmd_t);
KEEP(dke_stop_cmd_t);
KEEP(dke_telemetry_rec_t);
KEEP(dke_proc_name_t);
KEEP(dke_dnsflow_stat_t);
KEEP(dke_dns_name_t);
KEEP(dke_bash_line_t);
KEEP(dke_bash_origin_t);
KEEP(dke_frame_type_t);
KEEP(dke_collect_what_t);
KEEP(dke_direction_t);
KEEP(dke_dns_side_t);
KEEP(dke_bash_flags_t);

/* Constants that are macros in C: as an enum, so BTF carries them. */
enum dke_layout_constants {
	DKE_FRAME_MAGIC_V = DKE_FRAME_MAGIC | DKE_FRAME_VERSION,
	DKE_BASH_LINE_MAX_V = DKE_BASH_LINE_MAX,
	DKE_DNS_PORTS_MAX_V = DKE_DNS_PORTS_MAX,
};
typedef enum dke_layout_constants dke_layout_constants_t;
KEEP(dke_layout_constants_t);

