/*
 * caldb.c - calibration_metadata.yml (libyaml's document API) to the
 * sources of a module's constants.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "agipd_caldb.h"

struct ydoc {
	yaml_document_t doc;
	int loaded;
};

static int ydoc_load(struct ydoc *y, const char *path, agipd_err *e)
{
	yaml_parser_t parser;
	FILE *f = fopen(path, "rb");
	int rc = -1;
	y->loaded = 0;
	if (!f)
		return agipd_err_set(e, "%s: cannot read calibration metadata: %s", path, strerror(errno));
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		return agipd_err_set(e, "%s: cannot start the YAML parser", path);
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &y->doc)) {
		agipd_err_set(e, "%s:%lu:%lu: not valid YAML: %s%s%s", path, (unsigned long)parser.problem_mark.line + 1,
			      (unsigned long)parser.problem_mark.column + 1, parser.problem ? parser.problem : "error",
			      parser.context ? " " : "", parser.context ? parser.context : "");
	} else {
		y->loaded = 1;
		if (!yaml_document_get_root_node(&y->doc))
			agipd_err_set(e, "%s: empty calibration metadata", path);
		else
			rc = 0;
	}
	yaml_parser_delete(&parser);
	fclose(f);
	if (rc && y->loaded) {
		yaml_document_delete(&y->doc);
		y->loaded = 0;
	}
	return rc;
}

static void ydoc_free(struct ydoc *y)
{
	if (y->loaded)
		yaml_document_delete(&y->doc);
	y->loaded = 0;
}

/* The value of key in a mapping node, or NULL. */
static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = yaml_document_get_node(d, pr->key);
		if (k && k->type == YAML_SCALAR_NODE && strlen(key) == k->data.scalar.length &&
		    !memcmp(k->data.scalar.value, key, k->data.scalar.length))
			return yaml_document_get_node(d, pr->value);
	}
	return NULL;
}

/* A scalar's text into buf; 0 when n is a scalar that fits. */
static int scalar(yaml_node_t *n, char *buf, size_t len)
{
	if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length >= len)
		return -1;
	memcpy(buf, n->data.scalar.value, n->data.scalar.length);
	buf[n->data.scalar.length] = 0;
	return 0;
}

int agipd_caldb_check(const char *yaml_path, agipd_err *e)
{
	struct ydoc y;
	if (ydoc_load(&y, yaml_path, e) < 0)
		return -1;
	yaml_node_t *rc = map_get(&y.doc, yaml_document_get_root_node(&y.doc), "retrieved-constants");
	int st = 0;
	if (!rc || rc->type != YAML_MAPPING_NODE)
		st = agipd_err_set(e, "%s: no retrieved-constants mapping: not calibration metadata", yaml_path);
	ydoc_free(&y);
	return st;
}

int agipd_caldb_module(const char *yaml_path, const char *root, int module, const struct agipd_params *p,
		       struct agipd_consts_meta *m, agipd_err *e)
{
	struct ydoc y;
	char da[16], dir[4096], tmp[4096];
	int st = -1;

	memset(m, 0, sizeof *m);
	snprintf(m->path, sizeof m->path, "%s", yaml_path);
	m->caldb = 1;
	snprintf(da, sizeof da, "AGIPD%02d", module);
	if (root && root[0]) {
		snprintf(dir, sizeof dir, "%s", root);
	} else {
		snprintf(dir, sizeof dir, "%s", yaml_path);
		char *s = strrchr(dir, '/');
		if (s)
			s[s == dir] = 0;
		else
			snprintf(dir, sizeof dir, ".");
	}
	if (ydoc_load(&y, yaml_path, e) < 0)
		return -1;
	yaml_node_t *top = yaml_document_get_root_node(&y.doc);
	yaml_node_t *mod = map_get(&y.doc, map_get(&y.doc, top, "retrieved-constants"), da);
	yaml_node_t *consts = map_get(&y.doc, mod, "constants");
	if (!mod) {
		agipd_err_set(e, "%s: %s is not in the calibration metadata (retrieved-constants)", yaml_path, da);
		goto out;
	}
	if (!consts || consts->type != YAML_MAPPING_NODE) {
		agipd_err_set(e, "%s: %s has no constants in the calibration metadata", yaml_path, da);
		goto out;
	}
	if (scalar(map_get(&y.doc, mod, "physical-name"), m->pdu, sizeof m->pdu) < 0)
		m->pdu[0] = 0;
	for (int c = 0; c < AGIPD_CONST_KINDS; c++) {
		struct agipd_const_src *s = &m->src[c];
		if (!agipd_const_needed(p, c))
			continue;
		yaml_node_t *cn = map_get(&y.doc, consts, agipd_const_names[c]);
		char path[4096], dset[480];
		if (!cn) {
			agipd_err_set(e, "%s: %s: constant %s is not in the calibration metadata", yaml_path, da,
				      agipd_const_names[c]);
			goto out;
		}
		if (scalar(map_get(&y.doc, cn, "path"), path, sizeof path) < 0 || !path[0] ||
		    scalar(map_get(&y.doc, cn, "dataset"), dset, sizeof dset) < 0 || !dset[0]) {
			agipd_err_set(e, "%s: %s: constant %s needs a path and a dataset", yaml_path, da,
				      agipd_const_names[c]);
			goto out;
		}
		if (scalar(map_get(&y.doc, cn, "ccv_id"), s->ccv_id, sizeof s->ccv_id) < 0)
			s->ccv_id[0] = 0;
		if (scalar(map_get(&y.doc, cn, "creation-time"), s->creation_time, sizeof s->creation_time) < 0)
			s->creation_time[0] = 0;
		snprintf(s->pdu, sizeof s->pdu, "%s", m->pdu);
		snprintf(s->group, sizeof s->group, "%s", dset);
		size_t L = strlen(dset);
		int nd = snprintf(s->dataset, sizeof s->dataset, "%s%sdata", dset, L && dset[L - 1] == '/' ? "" : "/");
		int np = path[0] == '/' ? snprintf(tmp, sizeof tmp, "%s", path) : snprintf(tmp, sizeof tmp, "%s/%s", dir, path);
		if (nd < 0 || (size_t)nd >= sizeof s->dataset || np < 0 || (size_t)np >= sizeof tmp ||
		    strlen(tmp) >= sizeof m->files[0].path) {
			agipd_err_set(e, "%s: %s: constant %s: path or dataset name too long", yaml_path, da,
				      agipd_const_names[c]);
			goto out;
		}
		int f;
		for (f = 0; f < m->nfiles; f++)
			if (!strcmp(m->files[f].path, tmp))
				break;
		if (f == m->nfiles) {
			snprintf(m->files[f].path, sizeof m->files[f].path, "%s", tmp);
			m->nfiles++;
		}
		s->file = f;
		s->used = 1;
	}
	st = agipd_consts_probe_sources(p, m, e);
out:
	ydoc_free(&y);
	return st;
}
