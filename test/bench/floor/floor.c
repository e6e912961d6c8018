/* Loads floor.bpf.o (empty programs on the collector's hooks), attaches them
 * (cgroup programs to the cgroup v2 root), prints one JSON line with their
 * program ids and waits; SIGTERM or SIGINT detaches them and exits.
 *   floor <floor.bpf.o> <cgroup v2 root> */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>
#include "../gen/gen.h"

int main(int argc, char **argv)
{
	struct bpf_link *links[16];
	int nlinks = 0, cg, first = 1;
	struct bpf_object *obj;
	struct bpf_program *prog;

	if (argc != 3) {
		fprintf(stderr, "usage: floor <floor.bpf.o> <cgroup v2 root>\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || bpf_object__load(obj))
		die("loading the floor programs");
	cg = open(argv[2], O_RDONLY | O_DIRECTORY);
	if (cg < 0)
		die("opening the cgroup");
	bpf_object__for_each_program(prog, obj) {
		enum bpf_prog_type t = bpf_program__type(prog);
		struct bpf_link *l = t == BPF_PROG_TYPE_CGROUP_SKB || t == BPF_PROG_TYPE_CGROUP_SOCK
					     ? bpf_program__attach_cgroup(prog, cg)
					     : bpf_program__attach(prog);
		if (!l)
			die(bpf_program__name(prog));
		if (nlinks < 16)
			links[nlinks++] = l;
	}
	printf("{\"ids\":[");
	bpf_object__for_each_program(prog, obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) == 0) {
			printf("%s%u", first ? "" : ",", info.id);
			first = 0;
		}
	}
	printf("]}\n");
	fflush(stdout);
	while (!stop_requested)
		pause();
	while (nlinks > 0)
		bpf_link__destroy(links[--nlinks]);
	bpf_object__close(obj);
	return 0;
}
