/*
 * agipd_plan.h - the plan of a run: which rank corrects which file and which
 * of its trains.  A pure function of (the files' frame counts, ranks, ranks
 * per node, writer kind): no MPI, no HDF5, no I/O; every rank computes it
 * alike.  Used by the run, --dry-run, the benchmark's I/O floor and the
 * plan-efficiency tool.
 *
 * Files are taken in rounds of k files, in their order; in a round the ranks
 * are split into one contiguous group per file (the serial writer: one rank
 * per file, the others idle).  Inside a group, ranks take contiguous runs of
 * trains holding about the same number of frames (agipd_plan_split()).
 *
 * Rounds end together (the ranks of a node share constants by round), so a
 * round lasts as long as its slowest group.  AGIPD_PLAN_ROUNDS takes k =
 * min(files left, ranks).  AGIPD_PLAN_BALANCED, with more files than
 * ranks, picks the round size that makes the sum of the rounds' slowest
 * groups least when that gains 5 % or more (160 equal files on 96 ranks:
 * rounds of 48, 48, 48 and 16 files on 2 or 6 ranks each, efficiency 100 %,
 * instead of 96 + 64 files, 83 %), and gives the ranks of a round to its
 * files in proportion to their frames.  With as many ranks as files or more
 * and equal files, both are the same plan.
 *
 * AGIPD_PLAN_GROUPS has no lockstep (lockstep == 0) when it makes more than
 * one round (a plan of one round is lockstep: nothing waits, and the ranks
 * of a node on one module share its constants across groups): with more files than
 * ranks (or the serial writer) the ranks are split once into G fixed groups
 * of contiguous ranks, sizes differing by at most 1 (serial: G groups of one
 * rank), and the files, in their order (module by module), into G
 * contiguous runs balanced by frames over group size; each group corrects
 * its run back to back and never waits for another.  G is the largest
 * whose model time (the slowest group's frames over its size) is within 1 %
 * of the least: small groups have less overhead per file, which the model
 * does not count (in it one group of all ranks is always ideal).  160 equal files on 96 ranks:
 * 32 groups of 3 ranks and 5 files, 100 %.  With as many ranks as files or
 * more it is the balanced plan's one round (one file per group; equal
 * files: P/F ranks each).  Its rounds say who does what in which order:
 * round r holds the r-th file of every group (a group with fewer files is
 * absent from later rounds), and a group's ranks are the same in every
 * round.
 */
#ifndef AGIPD_PLAN_H
#define AGIPD_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "agipd_err.h"

enum agipd_plan_policy {
	AGIPD_PLAN_ROUNDS = 0,     /* rounds of min(files left, ranks) files */
	AGIPD_PLAN_BALANCED,       /* round size and group sizes by frames */
	AGIPD_PLAN_GROUPS,         /* fixed groups, each its files back to back */
};

/* One file of a round and the ranks [rank0, rank0 + nranks) that write it. */
struct agipd_plan_group {
	int file;                  /* index into the plan's input */
	int rank0, nranks;
};

struct agipd_plan {
	int nfiles, nranks, ranks_per_node, serial;
	int lockstep;              /* 1: rounds end together (every plan of one round); 0: fixed groups that never wait (AGIPD_PLAN_GROUPS) */
	int nrounds;
	int *round_first;          /* nrounds + 1: groups of round r are [round_first[r], round_first[r + 1]) */
	struct agipd_plan_group *groups;   /* one per file, in round order */
};

/*
 * Plan nfiles files on nranks ranks (ranks_per_node consecutive ranks per
 * node, for agipd_plan_loads(); 0 or less: all on one node).  frames[i]:
 * the frames of file i, or frames == NULL when they are not known (every
 * file counts alike).  serial: the serial writer (one rank per file).
 * Returns 0, or -1 with e set (bad arguments, out of memory).
 */
int agipd_plan_make(struct agipd_plan *p, const uint64_t *frames, int nfiles, int nranks, int ranks_per_node,
		    int serial, enum agipd_plan_policy policy, agipd_err *e);
void agipd_plan_free(struct agipd_plan *p);

/* The frames a raw file of `bytes` bytes holds, as the plan weighs it: the
 * raw data (2 x 2 bytes a pixel and frame) is nearly all of the file;
 * rounded to whole frames so that files alike weigh alike. */
uint64_t agipd_plan_frames_of_size(uint64_t bytes);

/* The group of round `round` that `rank` belongs to, or NULL (idle). */
const struct agipd_plan_group *agipd_plan_group_of(const struct agipd_plan *p, int round, int rank);

/*
 * First frame of rank i of a g-rank group on a file of `nframes` frames whose
 * trains start at train_first[0..ntrains) (ascending): train-aligned,
 * balanced by frames.  i == 0 gives 0, i >= g gives nframes; rank i takes
 * [split(i), split(i + 1)).
 */
uint64_t agipd_plan_split(const uint64_t *train_first, size_t ntrains, uint64_t nframes, int i, int g);

/*
 * The model of a plan: a rank corrects frames at one rate, a file's frames
 * split evenly over its group, a round lasts as long as its slowest group.
 * agipd_plan_time(): the sum over rounds, in frames of one rank (without
 * lockstep: the largest over groups of the sum of their files' frames over
 * their size);
 * agipd_plan_efficiency(): the ideal (all frames / ranks) over that, in
 * (0, 1]; 1 when there are no frames.  frames == NULL: one frame per file.
 */
double agipd_plan_time(const struct agipd_plan *p, const uint64_t *frames);
double agipd_plan_efficiency(const struct agipd_plan *p, const uint64_t *frames);

/*
 * Constants loads of a plan: per round, the (node, module) pairs whose ranks
 * must load the module's constants (not kept from the round before with the
 * same ranks on the same module).  module[i]: the module of file i.
 * Returns the total over the rounds.  Without lockstep the ranks of a group
 * on one node share constants: a group loads once per node it spans at each
 * change of module from one of its files to the next.
 */
int agipd_plan_loads(const struct agipd_plan *p, const int *module);

#endif
