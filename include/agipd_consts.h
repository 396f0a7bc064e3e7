/*
 * agipd_consts.h - calibration constants from files to the kernel, the one
 * module that owns them:
 *
 *   load     consts_h5.c (agipd_consts_h5.h): find and check a module's
 *            constants (constants folder; caldb.c for the calibration
 *            database), read cells of them transposed to C order as float32;
 *   convert  consts.c (this header): the layout the kernel streams and the
 *            preparation of raw constants into it; pure, no MPI, no HDF5;
 *   share    consts_share.c (agipd_consts_share.h): agipd_consts_acquire()
 *            is the module's one entry point: given a request (module,
 *            cells, constants folder or calibration database, parameters,
 *            the run's conditions) and the ranks of a node on that module,
 *            they find the constants, load disjoint cells into one MPI-3
 *            shared-memory window, checksum the files in parts and agree,
 *            and keep them across calls; the only MPI part, independent of
 *            the run (run*.c) that calls it.
 */
#ifndef AGIPD_CONSTS_H
#define AGIPD_CONSTS_H

#include <stddef.h>
#include <stdint.h>

struct agipd_params;

/*
 * Constants of one module, laid out for the kernel: for each memory cell one
 * block of `cell_words` 32-bit words holding the fields below, each a full
 * 512 x 128 image; fields that the parameters do not need are absent
 * (offset -1).  `data` is either owned (malloc) or points into a shared
 * memory window; the struct never frees it.
 */
enum agipd_field {
	AGIPD_F_THR0 = 0,  /* ThresholdsDark[...,0] */
	AGIPD_F_THR1,      /* ThresholdsDark[...,1] */
	AGIPD_F_OFF0, AGIPD_F_OFF1, AGIPD_F_OFF2,
	AGIPD_F_MASK0, AGIPD_F_MASK1, AGIPD_F_MASK2,  /* bad pixels per gain, OR-ed */
	AGIPD_F_REL1,      /* ml/mh */
	AGIPD_F_REL2,      /* 4.48*ml/mh */
	AGIPD_F_BASE,      /* bl - bh*ml/mh */
	AGIPD_F_FF,        /* sanitised SlopesFF */
	AGIPD_NFIELDS
};

struct agipd_consts {
	int ncells;                      /* cells held: 0 .. ncells-1 */
	int field_off[AGIPD_NFIELDS];    /* word offset in a cell block, or -1 */
	size_t cell_words;               /* words per cell block */
	uint32_t *data;                  /* ncells * cell_words words */
	float *ff_median;                /* [ncells] median of SlopesFF, or NULL */
	float *photon_div;               /* [ncells] adu_per_kev * E, or NULL */
};

/* Which fields a parameter set needs; fills field_off and cell_words. */
void agipd_consts_layout(const struct agipd_params *p, struct agipd_consts *k);

static inline float *agipd_consts_f(const struct agipd_consts *k, int cell, enum agipd_field f)
{
	return (float *)(k->data + (size_t)cell * k->cell_words + k->field_off[f]);
}
static inline uint32_t *agipd_consts_u(const struct agipd_consts *k, int cell, enum agipd_field f)
{
	return k->data + (size_t)cell * k->cell_words + k->field_off[f];
}

/*
 * Raw constants of `n` cells in C order, as float32 (uint32 for bad pixels),
 * each pointer an array [k][n][512*128], k the leading entries of the
 * trailing dimension of the facility's shape that the correction uses: 2 of
 * ThresholdsDark's 5 (high->medium, medium->low), 3 for Offset and
 * BadPixelsDark, 5 of SlopesPC's 10 (ml, bl, unused, mh, bh), 1 for
 * BadPixelsPC/SlopesFF/BadPixelsFF.  Only those are read: the arrays need
 * be no larger.  Fields the parameters do not need may be NULL.  ff_cells is
 * 0 when SlopesFF/BadPixelsFF have no cell axis (then they hold one image
 * each).
 */
struct agipd_raw_consts {
	int n;
	const float *thresholds;     /* [2][n][P] */
	const float *offset;         /* [3][n][P] */
	const uint32_t *bp_dark;     /* [3][n][P] */
	const float *slopes_pc;      /* [5][n][P] */
	const uint32_t *bp_pc;       /* [n][P] */
	const float *slopes_ff;      /* [ff_cells ? n : 1][P] */
	const uint32_t *bp_ff;       /* [ff_cells ? n : 1][P] */
	int ff_cells;
};

/*
 * Fill cells [cell0, cell0 + raw->n) of k from raw constants: sanitise the
 * slopes (SPEC steps 5 and 6), combine the masks, precompute the gain ratios.
 * k must be laid out and allocated for at least cell0 + raw->n cells.
 * scratch needs AGIPD_PIXELS floats.  Returns 0, or -1 with msg set when the
 * photon conversion factor is not usable.
 */
int agipd_consts_prepare(const struct agipd_params *p, const struct agipd_raw_consts *raw,
			 int cell0, struct agipd_consts *k, float *scratch, char *msg, size_t msglen);

/* Median of n floats ignoring NaN (even count: mean of the two middle values,
 * in float32).  Reorders v.  NaN when every value is NaN. */
float agipd_median_f32(float *v, size_t n);

/* 32-bit words a module's constants of ncells cells occupy: the cell blocks,
 * then ff_median[ncells] and photon_div[ncells]. */
size_t agipd_consts_words(const struct agipd_consts *k, int ncells);
/* Point k (laid out) at mem, which holds agipd_consts_words() words. */
void agipd_consts_attach(struct agipd_consts *k, int ncells, uint32_t *mem);

/* The cells [lo, hi) of ncells that rank `rank` of `nranks` sharing one
 * module's constants loads and converts: contiguous, balanced, disjoint. */
void agipd_consts_share_range(int ncells, int rank, int nranks, int *lo, int *hi);

#endif /* AGIPD_CONSTS_H */
