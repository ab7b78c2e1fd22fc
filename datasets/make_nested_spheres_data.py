"""``python -m datasets.make_nested_spheres_data [--data_dir DIR]``: write the data files."""

import argparse

from datasets import DATA_DIR, nested_spheres


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--data_dir', default=str(DATA_DIR), help=f'default {DATA_DIR}')
    args = parser.parse_args(argv)
    nested_spheres.generate(args.data_dir)
    print(f'wrote {nested_spheres.folder(args.data_dir)}/{{train,val}}.npz')


if __name__ == '__main__':
    main()
